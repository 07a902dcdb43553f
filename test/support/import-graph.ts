// Walks the relative imports of a source file: which files it reaches and which packages it names.
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The source files reachable from `entry` (a path below src/) and the bare specifiers they import. */
export function importGraph(entry: string): { files: string[]; external: string[] } {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../src', entry)
  const seen = new Set<string>()
  const external = new Set<string>()
  const visit = (file: string) => {
    if (seen.has(file)) return
    seen.add(file)
    const source = readFileSync(file, 'utf8')
    for (const [, specifier] of source.matchAll(/(?:import|export)[^'"]*?from\s+'([^']+)'/g)) {
      if (specifier === undefined) continue
      if (specifier.startsWith('.')) visit(resolve(dirname(file), specifier.replace(/\.js$/, '.ts')))
      else external.add(specifier)
    }
  }
  visit(root)
  return { files: [...seen], external: [...external].sort() }
}
