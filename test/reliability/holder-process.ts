// A lease holder in a process of its own (so its event loop can be blocked): the holder app on STORE_URL.
import type { AddressInfo } from 'node:net'
import { openStore } from '../../examples/payments/store-from-url.js'
import { createHolderApp, writeLine } from './holder-app.js'

const { STORE_URL, GATEWAY_URL, LEASE_MS } = process.env
if (STORE_URL === undefined || GATEWAY_URL === undefined || LEASE_MS === undefined) {
  throw new Error('holder-process needs STORE_URL, GATEWAY_URL and LEASE_MS')
}
const opened = await openStore(STORE_URL)
const { app } = createHolderApp({
  store: opened.store,
  leaseMs: Number(LEASE_MS),
  gatewayUrl: GATEWAY_URL,
  log: writeLine,
})
const server = app.listen(0, '127.0.0.1', () => {
  writeLine(`holder listening on http://127.0.0.1:${(server.address() as AddressInfo).port}`)
})
process.once('SIGTERM', () => {
  server.close()
  server.closeAllConnections()
  void opened.close().finally(() => process.exit(0))
})
