// A second process on a SQLite file, for tests that need real cross-process locking.
//
//   hold <file> <holdMs>  BEGIN IMMEDIATE, print "locked", wait, COMMIT, print "released"
//   race <file> <table> <prefix> <count>  print "ready", wait for "go" on stdin, then begin keys
//                                         <prefix>0 … <prefix><count - 1> in turn, each with a fresh
//                                         token, and print the result kinds as one JSON array

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
  const [table, prefix, count] = rest
  if (table === undefined || prefix === undefined) throw new Error('race needs <table> <prefix> <count>')
  const store = await openSqliteStore(file, { table })
  process.stdout.write('ready\n')
  process.stdin.setEncoding('utf8')
  let input = ''
  while (!input.includes('go')) {
    const [chunk] = (await once(process.stdin, 'data')) as [string]
    input += chunk
  }
  const kinds: string[] = []
  for (let i = 0; i < Number(count); i++) {
    const token = randomBytes(16).toString('hex')
    const input = {
      key: `${prefix}${i}`,
      scope: 'race',
      fingerprint: 'v1:race',
      token,
      leaseMs: 60_000,
      retentionMs: 60_000,
    }
    kinds.push((await store.begin(input)).kind)
  }
  await store.close()
  process.stdout.write(`${JSON.stringify(kinds)}\n`)
  process.exit(0)
} else {
  throw new Error(`usage: sqlite-child hold <file> <ms> | race <file> <table> <prefix> <count>`)
}
