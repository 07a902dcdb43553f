// Loads the Lua file of each operation once, from beside this module, and hashes it for EVALSHA.

import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'

/** One operation's script: its source (for EVAL after NOSCRIPT) and the SHA-1 that EVALSHA names. */
export interface LuaScript {
  readonly name: string
  readonly source: string
  readonly sha: string
}

export type OperationName = 'begin' | 'complete' | 'release' | 'extend' | 'get' | 'delete'

let loaded: Readonly<Record<OperationName, LuaScript>> | undefined

/** The six scripts, read on first call and kept for the life of the process. */
export function luaScripts(): Readonly<Record<OperationName, LuaScript>> {
  if (loaded !== undefined) return loaded
  const lib = readFileSync(new URL('./lua/lib.lua', import.meta.url), 'utf8')
  const load = (name: OperationName, file: URL) => script(name, readFileSync(file, 'utf8'), lib)
  loaded = {
    // One literal URL per file, so bundlers and the build can see every script the store needs.
    begin: load('begin', new URL('./lua/begin.lua', import.meta.url)),
    complete: load('complete', new URL('./lua/complete.lua', import.meta.url)),
    release: load('release', new URL('./lua/release.lua', import.meta.url)),
    extend: load('extend', new URL('./lua/extend.lua', import.meta.url)),
    get: load('get', new URL('./lua/get.lua', import.meta.url)),
    delete: load('delete', new URL('./lua/delete.lua', import.meta.url)),
  }
  return loaded
}

/** The script as sent: its `#!lua` line, the shared helpers, then the rest of it. */
function script(name: OperationName, own: string, lib: string): LuaScript {
  const shebang = own.startsWith('#!') ? own.slice(0, own.indexOf('\n') + 1) : ''
  const source = `${shebang}${lib}\n${own.slice(shebang.length)}`
  // The SHA is of the exact bytes sent with EVAL, so it is computed here, never pasted.
  const sha = createHash('sha1').update(source, 'utf8').digest('hex')
  return { name, source, sha }
}
