#!/usr/bin/env node
import { createRequire } from "node:module";
import { Command } from "commander";
import { exitTwoOnUsageError } from "./command-kit.ts";
import { registerAccountCommands } from "./commands/account.ts";
import { registerConvertCommand } from "./commands/convert.ts";
import { registerDeadLetterCommands } from "./commands/dead-letters.ts";
import { registerJobCommands } from "./commands/jobs.ts";
import { registerServerCommands } from "./commands/server.ts";
import { registerUserCommands } from "./commands/users.ts";

// The vid2mp3 command: the services (`serve`, `keygen`) and their client (every other command),
// one module per group under commands/. This file runs as TypeScript on Node.js 24 in a checkout
// and as compiled JavaScript (dist/) from the published package, also on Node.js 20: keep it
// free of newer syntax and of modules that load the services.

// Read, not imported: JSON modules are still experimental (and warn) on Node.js 20.
const { version } = createRequire(import.meta.url)("../../package.json") as { version: string };

const program = exitTwoOnUsageError(
  new Command()
    .name("vid2mp3")
    .description("Upload a video, get its MP3: a self-hosted conversion service.")
    .version(version)
    .showHelpAfterError("(see `vid2mp3 --help`)"),
);

registerServerCommands(program);
registerAccountCommands(program);
registerConvertCommand(program);
registerJobCommands(program);
registerUserCommands(program);
registerDeadLetterCommands(program);

await program.parseAsync();
