// A second process on a SQLite file, for tests that need real cross-process locking.
//
//   hold <file> <holdMs>  BEGIN IMMEDIATE, print "locked", wait, COMMIT, print "released"
//   race <file> <table> <key> <count>  print "ready", wait for "go" on stdin, run <count> begins
//                                      with distinct tokens on <key>, print the results as JSON

import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import Database from 'better-sqlite3'
import { openSqliteStore } from 'idempotency-kit/sqlite'

const [mode, file, ...rest] = process.argv.slice(2)

if (mode === 'hold' && file !== undefined) {
  const holdMs = Number(rest[0])
  const database = new Database(file)
  database.exec('BEGIN IMMEDIATE')
  process.stdout.write('locked\n')
  await new Promise((resolve) => setTimeout(resolve, holdMs))
  database.exec('COMMIT')
  database.close()
  process.stdout.write('released\n')
} else if (mode === 'race' && file !== undefined) {
  const [table, key, count] = rest
  if (table === undefined || key === undefined) throw new Error('race needs <table> <key> <count>')
  const store = await openSqliteStore(file, { table })
  process.stdout.write('ready\n')
  process.stdin.setEncoding('utf8')
  let input = ''
  while (!input.includes('go')) {
    const [chunk] = (await once(process.stdin, 'data')) as [string]
    input += chunk
  }
  const results = await Promise.all(
    Array.from({ length: Number(count) }, () =>
      store.begin({
        key,
        fingerprint: 'v1:race',
        token: randomBytes(16).toString('hex'),
        leaseMs: 60_000,
        retentionMs: 60_000,
      }),
    ),
  )
  await store.close()
  process.stdout.write(`${JSON.stringify(results)}\n`)
  process.exit(0)
} else {
  throw new Error(`usage: sqlite-child hold <file> <ms> | race <file> <table> <key> <count>`)
}
