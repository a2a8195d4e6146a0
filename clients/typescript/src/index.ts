export {
  type Auth,
  type AwsCredentials,
  MasklineClient,
  type MasklineClientOptions,
  type Page,
  paginate,
} from "./client.ts";
export * from "./errors.ts";
export type * from "./types.ts";
