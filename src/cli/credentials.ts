import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import path from "node:path";

/** What `vid2mp3 login` keeps for one server. */
export interface Credential {
  token: string;
  email: string;
  expiresAt: string | null;
  savedAt: string;
}

interface CredentialsFile {
  version: 1;
  servers: Record<string, Credential>;
}

/** `$XDG_CONFIG_HOME/vid2mp3/credentials.json`, `~/.config/vid2mp3/credentials.json` without it. */
export function credentialsPath(env: NodeJS.ProcessEnv = process.env): string {
  const configHome =
    env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : undefined;
  return path.join(configHome ?? path.join(homedir(), ".config"), "vid2mp3", "credentials.json");
}

/** The key of a server in the file: its URL without a trailing slash, query or fragment. */
export function serverKey(url: string | URL): string {
  const parsed = new URL(url);
  parsed.search = "";
  parsed.hash = "";
  return parsed.href.replace(/\/+$/, "");
}

/**
 * The tokens of `vid2mp3 login`, one per server URL, in a JSON file only its owner can read
 * (directory 0700, file 0600). Writes go to a private temporary file renamed into place, so the
 * file is never seen half written.
 */
export class CredentialsStore {
  readonly file: string;

  constructor(file: string = credentialsPath()) {
    this.file = file;
  }

  async get(server: string | URL): Promise<Credential | undefined> {
    return (await this.read()).servers[serverKey(server)];
  }

  async set(server: string | URL, credential: Credential): Promise<void> {
    const data = await this.read();
    data.servers[serverKey(server)] = credential;
    await this.write(data);
  }

  /** Forgets the server's token; false when there was none. */
  async delete(server: string | URL): Promise<boolean> {
    const data = await this.read();
    const key = serverKey(server);
    if (!(key in data.servers)) return false;
    delete data.servers[key];
    if (Object.keys(data.servers).length === 0) await rm(this.file, { force: true });
    else await this.write(data);
    return true;
  }

  private async read(): Promise<CredentialsFile> {
    let text: string;
    try {
      text = await readFile(this.file, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, servers: {} };
      throw error;
    }
    try {
      const parsed = JSON.parse(text) as Partial<CredentialsFile>;
      if (parsed && typeof parsed.servers === "object" && parsed.servers !== null) {
        return { version: 1, servers: parsed.servers };
      }
    } catch {
      // fall through
    }
    throw new Error(`${this.file} is not a vid2mp3 credentials file; remove it and log in again.`);
  }

  private async write(data: CredentialsFile): Promise<void> {
    const dir = path.dirname(this.file);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const temp = path.join(dir, `.credentials-${randomBytes(6).toString("hex")}.tmp`);
    try {
      await writeFile(temp, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600, flag: "wx" });
      // The umask cannot widen 0600, but be explicit in case the file system ignores the mode.
      await chmod(temp, 0o600);
      await rename(temp, this.file);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  }
}
