// A throwaway PostgreSQL database per run, for the demo, which always migrates its table into `public`.
import pg from 'pg'
import { POSTGRES_TEST_URL } from '../support/postgres.js'

const START_HINT = 'start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start'

/** A database this run created; `drop()` removes it with everything in it. */
export interface PrivateDatabase {
  readonly name: string
  /** A connection URL to it through `127.0.0.1:<port>` (5432 unless a proxy sits in between). */
  url(port?: number): string
  /** Ends open sessions to it and drops it; safe to call twice. */
  drop(): Promise<void>
}

/**
 * Creates `idem_sys_<random>` on the local server. The demo's `store-from-url.ts` cannot be pointed at a
 * schema (it migrates `public.idempotency_records`), so the run gets its own database instead of
 * writing into the shared database's `public`.
 */
export async function createPrivateDatabase(): Promise<PrivateDatabase> {
  const name = `idem_sys_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 10)}`
  await admin(`CREATE DATABASE "${name}"`).catch((error: unknown) => {
    const reason = error instanceof Error ? error.message : String(error)
    throw new Error(`PostgreSQL at 127.0.0.1:5432 is unreachable (${reason}); ${START_HINT}`, { cause: error })
  })
  let dropped = false
  return {
    name,
    url: (port = 5432) => `postgres://postgres@127.0.0.1:${port}/${name}`,
    async drop() {
      if (dropped) return
      // FORCE ends sessions a killed demo may have left for the server to notice (PostgreSQL 13+).
      await admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
      dropped = true
    },
  }
}

async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_TEST_URL, connectionTimeoutMillis: 5_000 })
  await client.connect()
  try {
    await client.query(sql)
  } finally {
    await client.end()
  }
}
