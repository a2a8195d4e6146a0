import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";

/**
 * A Secrets Manager stand-in for tests: answers the real SDK client's GetSecretValue and
 * PutSecretValue (JSON 1.1 protocol) for secrets kept in memory, and counts the reads. Point a function
 * at it with AWS_ENDPOINT_URL_SECRETS_MANAGER.
 */
export async function startSecretsManager() {
  const secrets = new Map<string, { value: string; versionId: string }>();
  let reads = 0;
  const server: Server = createServer(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += chunk;
    const target = String(req.headers["x-amz-target"] ?? "");
    const input = JSON.parse(body || "{}") as { SecretId?: string; SecretString?: string };
    const id = input.SecretId ?? "";
    res.setHeader("content-type", "application/x-amz-json-1.1");
    if (target === "secretsmanager.GetSecretValue") {
      reads++;
      const secret = secrets.get(id);
      if (!secret) {
        res.writeHead(400);
        res.end(JSON.stringify({ __type: "ResourceNotFoundException", message: "no such secret" }));
        return;
      }
      res.writeHead(200);
      res.end(
        JSON.stringify({
          ARN: id,
          Name: id.split(":").pop(),
          SecretString: secret.value,
          VersionId: secret.versionId,
          VersionStages: ["AWSCURRENT"],
          CreatedDate: Date.now() / 1000,
        }),
      );
      return;
    }
    if (target === "secretsmanager.PutSecretValue") {
      const versionId = randomUUID();
      secrets.set(id, { value: input.SecretString ?? "", versionId });
      res.writeHead(200);
      res.end(JSON.stringify({ ARN: id, Name: id.split(":").pop(), VersionId: versionId }));
      return;
    }
    res.writeHead(400);
    res.end(JSON.stringify({ __type: "UnknownOperationException", message: target }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    /** What `aws secretsmanager put-secret-value` does. */
    put: (arn: string, value: unknown) =>
      secrets.set(arn, { value: JSON.stringify(value), versionId: randomUUID() }),
    reads: () => reads,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
