/** Which response headers belong to the stored result, and which to this one request only (DESIGN §4.9). */

const NEVER_STORED = new Set([
  'set-cookie',
  // Credentials, should a route echo one onto its response: never kept at rest, never replayed to another.
  'authorization',
  'cookie',
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'content-encoding',
  'date',
  'server',
  'age',
  'vary',
  'retry-after',
  'traceparent',
  'tracestate',
  'server-timing',
  'idempotent-replayed',
])
const NEVER_STORED_PREFIXES = ['proxy-', 'access-control-', 'ratelimit-', 'x-ratelimit-']

/** Lower-cased names `Connection` lists: hop-by-hop for this message only (RFC 9110 §7.6.1); undefined when none. */
function connectionOptions(headers: ReadonlyArray<readonly [string, string]>): Set<string> | undefined {
  let named: Set<string> | undefined
  for (const [name, value] of headers) {
    if (name.length !== 10 || name.toLowerCase() !== 'connection') continue
    named ??= new Set<string>()
    for (const option of value.split(',')) named.add(option.trim().toLowerCase())
  }
  return named
}

function hasNeverStoredPrefix(name: string): boolean {
  for (const prefix of NEVER_STORED_PREFIXES) if (name.startsWith(prefix)) return true
  return false
}

/** Drops what must never be replayed; `markers` are the engine's own, set fresh on every response. */
export function storableHeaders(
  headers: ReadonlyArray<readonly [string, string]>,
  markers: ReadonlySet<string>,
): Array<readonly [string, string]> {
  const named = connectionOptions(headers)
  const kept: Array<readonly [string, string]> = []
  for (const header of headers) {
    const name = header[0].toLowerCase()
    if (NEVER_STORED.has(name) || markers.has(name) || named?.has(name) === true || hasNeverStoredPrefix(name)) {
      continue
    }
    kept.push(header)
  }
  return kept
}
