import { openAsBlob } from "node:fs";
import path from "node:path";

/** A tiny HTTP client of the gateway's public API, as a user's script would use it. */
export function gatewayClient(baseUrl: string) {
  const url = (p: string) => new URL(p, baseUrl);
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  return {
    async login(email: string, password: string): Promise<Response> {
      const basic = Buffer.from(`${email}:${password}`).toString("base64");
      return fetch(url("/login"), { method: "POST", headers: { authorization: `Basic ${basic}` } });
    },
    async token(email: string, password: string): Promise<string> {
      const response = await this.login(email, password);
      if (response.status !== 200)
        throw new Error(`login failed: ${response.status} ${await response.text()}`);
      return response.text();
    },
    async upload(token: string, file: string, name = path.basename(file)): Promise<Response> {
      const form = new FormData();
      form.append("file", await openAsBlob(file), name);
      return fetch(url("/upload"), { method: "POST", headers: bearer(token), body: form });
    },
    async job(token: string, id: string): Promise<Response> {
      return fetch(url(`/jobs/${id}`), { headers: bearer(token) });
    },
    async jobs(token: string, query = ""): Promise<Response> {
      return fetch(url(`/jobs${query}`), { headers: bearer(token) });
    },
    async download(
      token: string,
      fid: string,
      headers: Record<string, string> = {},
      method = "GET",
    ): Promise<Response> {
      return fetch(url(`/download?fid=${encodeURIComponent(fid)}`), {
        method,
        headers: { ...bearer(token), ...headers },
      });
    },
    async createUser(token: string, email: string, password: string, admin = false): Promise<Response> {
      return fetch(url("/users"), {
        method: "POST",
        headers: { ...bearer(token), "content-type": "application/json" },
        body: JSON.stringify({ email, password, admin }),
      });
    },
    /** Polls the job until it has ended (done or failed). */
    async waitForJob(token: string, id: string, timeoutMs = 30_000): Promise<Record<string, unknown>> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const response = await this.job(token, id);
        const job = (await response.json()) as Record<string, unknown>;
        if (job.status === "done" || job.status === "failed") return job;
        if (Date.now() > deadline)
          throw new Error(`job ${id} still ${String(job.status)} after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}
