/**
 * `docs/errors.md`, rendered from the error catalogue: the file is generated (`pnpm docs:errors`)
 * and a test compares it with this output, so the page a client reads cannot drift from the
 * codes the server sends. One `##` heading per code with an explicit `<a id>` anchor, the same
 * id the `docs` field of an error body points at (`/docs/errors#<code>`).
 */
import { ERROR_CATALOGUE, ERROR_DOCS_PATH } from './error-catalogue.js';
import { ERROR_CODES, httpStatusForErrorCode, type ErrorCode } from './errors.js';

/** Where the generated file lives in the repository, relative to its root. */
export const ERROR_DOCS_FILE = 'docs/errors.md';

// The reason phrases of the statuses the code table uses (core stays free of node:http).
const REASON_PHRASES: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

function statusLine(code: ErrorCode): string {
  const status = httpStatusForErrorCode(code);
  return `${status} ${REASON_PHRASES[status] ?? ''}`.trim();
}

/** The Markdown of `docs/errors.md`, in ERROR_CODES order; ends with one newline. */
export function renderErrorCatalogueMarkdown(codes: readonly ErrorCode[] = ERROR_CODES): string {
  const lines: string[] = [
    '# Error codes',
    '',
    '<!-- Generated from packages/core/src/contract/error-catalogue.ts by `pnpm docs:errors`. Do not edit: a test fails when this file differs. -->',
    '',
    'Every HTTP error response of the SentinelStacks API (and every refused WebSocket upgrade) has a JSON body of this shape:',
    '',
    '```json',
    `{ "error": "agent \\"x\\" not found", "code": "not_found", "docs": "${ERROR_DOCS_PATH}#not_found" }`,
    '```',
    '',
    '- `error`: a message for people; its wording may change, so do not parse it.',
    '- `code`: one of the codes below, stable within `/v1` (see [VERSIONING.md](VERSIONING.md)); branch on this.',
    '- `details`: present on some errors, e.g. `details.issues` (each with a JSON pointer `path` and a `message`) for schema failures.',
    `- \`docs\`: the relative URL of the code's entry on the server's \`${ERROR_DOCS_PATH}\` page; the anchors below are the same.`,
    '',
    'On a WebSocket the same codes arrive in `error` frames (`{"type": "error", "code": …, "error": …}`); the socket stays open unless it is closed with a close code (1000: the agent was deleted, 1001: the server is shutting down, 1008: the client read too slowly, 1011: an internal error).',
    '',
    '| Code | HTTP status | Title |',
    '| --- | --- | --- |',
    ...codes.map((code) => `| [\`${code}\`](#${code}) | ${statusLine(code)} | ${ERROR_CATALOGUE[code].title} |`),
  ];
  for (const code of codes) {
    const entry = ERROR_CATALOGUE[code];
    lines.push(
      '',
      `## <a id="${code}"></a>\`${code}\``,
      '',
      `**${entry.title}.** HTTP status: **${statusLine(code)}**.`,
      '',
      entry.meaning,
      '',
      'Typical causes:',
      '',
      ...entry.causes.map((cause) => `- ${cause}`),
      '',
      `What to do: ${entry.remedy}`,
    );
  }
  return `${lines.join('\n')}\n`;
}
