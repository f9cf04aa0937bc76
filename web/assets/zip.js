// A ZIP of several MP3s, made in the browser with fflate: the MP3s are fetched one by one with the
// token (as a single download is) and stored, not deflated (MP3 is compressed already), so making
// the archive costs no more than copying. The server stays a plain file server.

import { fetchMp3, saveBlob } from "./api.js";
import { Zip, ZipPassThrough } from "./vendor/fflate.js";

/** Names made unique inside the archive: "a.mp3", "a (2).mp3"… */
function uniqueName(name, taken) {
  let candidate = name;
  for (let n = 2; taken.has(candidate.toLowerCase()); n += 1)
    candidate = name.replace(/(\.[^.]*)?$/, ` (${n})$1`);
  taken.add(candidate.toLowerCase());
  return candidate;
}

/** Downloads the MP3s of `jobs` (done ones) as one ZIP; resolves to the ZIP's file name. */
export async function downloadZip(jobs) {
  const chunks = [];
  let failure;
  const zip = new Zip((error, chunk) => {
    if (error) failure = error;
    else chunks.push(chunk);
  });
  const taken = new Set();
  for (const job of jobs) {
    const { name, blob } = await fetchMp3(job.mp3Id);
    const entry = new ZipPassThrough(uniqueName(name, taken));
    entry.mtime = new Date(job.updatedAt);
    zip.add(entry);
    entry.push(new Uint8Array(await blob.arrayBuffer()), true);
  }
  zip.end();
  if (failure) throw failure;
  const stamp = new Date().toISOString().slice(0, 10);
  const name = `vid2mp3-${stamp}.zip`;
  saveBlob(new Blob(chunks, { type: "application/zip" }), name);
  return name;
}
