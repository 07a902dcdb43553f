// Counting wrappers for the bench servers: every store round trip a subject makes passes through one of these.
import type { Store } from 'idempotency-kit'
import type { PgQueryable } from 'idempotency-kit/postgres'
import type { Redis } from 'ioredis'

/** The counters a bench server exposes on its stats route. */
export interface Counters {
  /** Requests that reached the charge route's path (before any middleware). */
  requests: number
  /** Store round trips: network commands for Redis and PostgreSQL, store operations for memory and SQLite. */
  roundTrips: number
}

/** A store whose every operation counts as one round trip (memory, SQLite: no network to count). */
export function countingStore(store: Store, counters: Counters): Store {
  return {
    begin: (input) => {
      counters.roundTrips++
      return store.begin(input)
    },
    complete: (input) => {
      counters.roundTrips++
      return store.complete(input)
    },
    release: (input) => {
      counters.roundTrips++
      return store.release(input)
    },
    extend: (input) => {
      counters.roundTrips++
      return store.extend(input)
    },
    get: (key) => {
      counters.roundTrips++
      return store.get(key)
    },
    delete: (key, options) => {
      counters.roundTrips++
      return store.delete(key, options)
    },
  }
}

/** Counts every command an ioredis client sends: `sendCommand` is its one funnel (calls, scripts, pipelines). */
export function countIoredis(client: Redis, counters: Counters): void {
  const original = client.sendCommand.bind(client)
  client.sendCommand = ((...args: unknown[]) => {
    counters.roundTrips++
    return (original as (...a: unknown[]) => unknown)(...args)
  }) as typeof client.sendCommand
}

/** A `pg` pool seen through the store's structural type, counting each statement. */
export function countingPool(pool: PgQueryable, counters: Counters): PgQueryable {
  return {
    query(config) {
      counters.roundTrips++
      return pool.query(config)
    },
  }
}

/** Wraps the named async methods of an object so each call counts as one round trip. */
export function countMethods<T extends object>(target: T, names: ReadonlyArray<keyof T>, counters: Counters): void {
  for (const name of names) {
    const original = target[name]
    if (typeof original !== 'function') throw new TypeError(`${String(name)} is not a method`)
    const bound = (original as (...a: unknown[]) => unknown).bind(target)
    ;(target as Record<keyof T, unknown>)[name] = (...args: unknown[]) => {
      counters.roundTrips++
      return bound(...args)
    }
  }
}
