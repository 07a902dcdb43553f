// A private schema per test run on the local PostgreSQL, with pools into it, dropped afterwards.

import pg from 'pg'

/** The test database: the local server, user postgres (trust auth), database `test`. */
export const POSTGRES_TEST_URL = 'postgres://postgres@127.0.0.1:5432/test'

const START_HINT = 'start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start'

/** One run's schema and the pools opened into it; `close()` drops the schema and ends every pool. */
export interface PostgresTestSchema {
  /** A fresh schema name, unquoted (letters, digits, underscores): `idem_test_<random>`. */
  readonly schema: string
  /** A pool of 20 connections to the test database. */
  readonly pool: pg.Pool
  /**
   * Another pool to the same database (e.g. with `options` that set a GUC), ended by `close()` unless
   * ended before. The server allows 100 connections, shared by every suite running at the time.
   */
  newPool(config?: pg.PoolConfig): pg.Pool
  /** Drops the schema (CASCADE: only what this run created lives there) and ends every pool. */
  close(): Promise<void>
}

/**
 * Creates a random schema on the local PostgreSQL; rejects, saying how to start the server, when it
 * cannot be reached.
 */
export async function createPostgresTestSchema(): Promise<PostgresTestSchema> {
  const pools: pg.Pool[] = []
  const newPool = (config: pg.PoolConfig = {}): pg.Pool => {
    const pool = new pg.Pool({
      connectionString: POSTGRES_TEST_URL,
      max: 20,
      connectionTimeoutMillis: 5_000,
      // Idle connections go back soon: other suites share the server's 100 connections.
      idleTimeoutMillis: 1_000,
      ...config,
    })
    // An idle client's error (the server restarting) must not crash the test process.
    pool.on('error', () => {})
    pools.push(pool)
    return pool
  }
  const endPools = () => Promise.all(pools.splice(0).map((pool) => (pool.ended ? undefined : pool.end())))

  const pool = newPool()
  const schema = `idem_test_${Date.now().toString(36)}_${randomSuffix()}`
  try {
    await pool.query(`CREATE SCHEMA "${schema}"`)
  } catch (error) {
    await endPools()
    const reason = error instanceof Error ? error.message : String(error)
    throw new Error(`PostgreSQL at 127.0.0.1:5432 (database test) is unreachable (${reason}); ${START_HINT}`, {
      cause: error,
    })
  }
  return {
    schema,
    pool,
    newPool,
    async close() {
      try {
        await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      } finally {
        await endPools()
      }
    },
  }
}

function randomSuffix(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6))
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('')
}
