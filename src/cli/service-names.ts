/** What `vid2mp3 serve` can run: one service, or `all` of them in one process. */
export const serviceNames = ["all", "auth", "gateway", "converter", "notification"] as const;
export type ServiceName = (typeof serviceNames)[number];

/** The services that own a database (`vid2mp3 migrate <service>`). */
export const migratableServiceNames = ["auth", "gateway"] as const;
export type MigratableService = (typeof migratableServiceNames)[number];
