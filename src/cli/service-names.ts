/** What `vid2mp3 serve` can run: one service, or `all` of them in one process. */
export const serviceNames = ["all", "auth", "gateway", "converter", "notification"] as const;
export type ServiceName = (typeof serviceNames)[number];
