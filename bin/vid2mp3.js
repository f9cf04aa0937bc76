#!/usr/bin/env node
// The vid2mp3 command. The package made by `npm pack` carries the sources compiled to JavaScript
// (dist/), which any Node.js 20 or newer runs; a checkout has no dist/ and runs the TypeScript
// sources, which need Node.js 24 (the project brings it: `npm start` and `npx vid2mp3` use it).
import { existsSync } from "node:fs";

const compiled = new URL("../dist/cli/main.js", import.meta.url);
if (existsSync(compiled)) {
  await import(compiled.href);
} else if (Number(process.versions.node.split(".")[0]) >= 24) {
  await import(new URL("../src/cli/main.ts", import.meta.url).href);
} else {
  process.stderr.write(
    `vid2mp3: in a checkout this runs on Node.js 24 (this is ${process.versions.node}): use \`npx vid2mp3\`, ` +
      "which runs the Node.js 24 the project brings, or install the package (see README).\n",
  );
  process.exit(1);
}
