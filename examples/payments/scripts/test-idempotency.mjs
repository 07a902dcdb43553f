// The seed's test-idempotency.js on Node 20's fetch and crypto.randomUUID(): run it against `npm start`.
import { Console } from 'node:console'

const BASE_URL = (process.env.API_URL ?? 'http://localhost:3000').replace(/\/+$/, '')
const API_URL = BASE_URL.endsWith('/api/payments/charge') ? BASE_URL : `${BASE_URL}/api/payments/charge`

// One line per object, as in the seed's Expected Output (console.log wraps objects past 80 columns).
const console = new Console({
  stdout: process.stdout,
  stderr: process.stderr,
  inspectOptions: { breakLength: Infinity },
})

/** axios.post with the seed's semantics: resolves on 2xx, rejects with `error.response` otherwise. */
async function post(url, payload, headers) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify(payload),
  })
  const text = await response.text()
  let data = text
  try {
    data = JSON.parse(text)
  } catch {
    // Not JSON: keep the text, as axios does.
  }
  const result = { status: response.status, headers: response.headers, data }
  if (!response.ok) {
    const error = new Error(`Request failed with status code ${response.status}`)
    error.response = result
    throw error
  }
  return result
}

async function testIdempotency() {
  const idempotencyKey = crypto.randomUUID()
  const payload = {
    amount: 5000,
    customerId: 'cus_123',
    currency: 'usd',
  }

  console.log('Test 1: First request should process')
  const response1 = await post(API_URL, payload, { 'Idempotency-Key': idempotencyKey })
  console.log('Response:', response1.data)
  console.log('Cached:', response1.headers.get('idempotency-cached'))

  console.log('\nTest 2: Retry with same key should return cached result')
  const response2 = await post(API_URL, payload, { 'Idempotency-Key': idempotencyKey })
  console.log('Response:', response2.data)
  console.log('Cached:', response2.headers.get('idempotency-cached'))

  console.log('\nTest 3: Same key with different body should fail')
  try {
    const unexpected = await post(API_URL, { ...payload, amount: 10000 }, { 'Idempotency-Key': idempotencyKey })
    // The seed prints nothing here; saying so makes a broken server visible.
    console.log('Unexpected success:', unexpected.data)
    process.exitCode = 1
  } catch (error) {
    if (error.response === undefined) throw error
    console.log('Expected error:', error.response.data)
  }

  console.log('\nTest 4: Different key should create new charge')
  const response4 = await post(API_URL, payload, { 'Idempotency-Key': crypto.randomUUID() })
  console.log('Response:', response4.data)
  console.log('Cached:', response4.headers.get('idempotency-cached'))
}

await testIdempotency()
