import net from "node:net";

export interface TcpProxy {
  /** The local port to connect to instead of the target's. */
  port: number;
  /**
   * Simulates the backend going away. `refuse` (default): existing connections are cut and new
   * ones refused, like a stopped server. `hang`: the network goes silent, nothing is closed or
   * answered, like a lost route or a frozen host (exercises timeouts).
   */
  pause(mode?: "refuse" | "hang"): Promise<void>;
  /** Accepts and forwards connections again (silent ones from `hang` are cut first). */
  resume(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A small TCP forwarder from 127.0.0.1:<port> to 127.0.0.1:<targetPort>, with a switch to cut the
 * line: the fault injector for tests of any TCP backend (database, broker, blob store, SMTP).
 */
export async function startTcpProxy(targetPort: number, targetHost = "127.0.0.1"): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let state: "open" | "refuse" | "hang" | "closed" = "open";

  const server = net.createServer((client) => {
    track(client);
    if (state === "hang") {
      client.pause(); // accepted, never answered
      return;
    }
    if (state !== "open") {
      client.destroy();
      return;
    }
    const upstream = net.connect({ port: targetPort, host: targetHost });
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });

  function track(socket: net.Socket): void {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
  }

  function cutAll(): void {
    for (const socket of sockets) socket.destroy();
  }

  function listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
  }

  function stopListening(): Promise<void> {
    return new Promise((resolve) => {
      if (!server.listening) return resolve();
      server.close(() => resolve());
      cutAll();
    });
  }

  await listen(0);
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    async pause(mode = "refuse") {
      if (state === "closed") throw new Error("the proxy is closed");
      if (mode === "refuse") {
        state = "refuse";
        await stopListening();
        return;
      }
      state = "hang";
      // Freeze every open connection: no byte goes through any more, nothing is closed.
      for (const socket of sockets) {
        socket.unpipe();
        socket.pause();
      }
    },
    async resume() {
      if (state === "closed") throw new Error("the proxy is closed");
      if (state === "hang") cutAll();
      state = "open";
      if (!server.listening) await listen(port);
    },
    async close() {
      state = "closed";
      await stopListening();
      cutAll();
    },
  };
}
