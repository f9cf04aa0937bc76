export interface Mail {
  /** Stable id of this mail (e.g. `<jobId>-ready`): sending the same id twice is harmless where the backend allows. */
  id: string;
  to: string;
  subject: string;
  text: string;
  html: string;
}

export interface Mailer {
  send(mail: Mail): Promise<void>;
  /** Throws when the mail backend cannot be reached (readiness checks). */
  check(): Promise<void>;
  close(): Promise<void>;
}
