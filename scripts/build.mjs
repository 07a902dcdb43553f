// Builds dist/: tsc for the code, then the Lua and SQL files each store loads from beside itself.
import { execFileSync } from 'node:child_process'
import { cpSync, readdirSync, rmSync, statSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
rmSync(join(root, 'dist'), { recursive: true, force: true })
execFileSync(
  process.execPath,
  [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')],
  {
    stdio: 'inherit',
  },
)

function* assets(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) yield* assets(path)
    else if (name.endsWith('.lua') || name.endsWith('.sql')) yield path
  }
}
for (const file of assets(join(root, 'src'))) {
  cpSync(file, join(root, 'dist', relative(join(root, 'src'), file)))
}
