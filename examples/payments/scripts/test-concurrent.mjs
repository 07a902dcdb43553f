// The seed's test-concurrent.js on Node 20's fetch and crypto.randomUUID(): run it against `npm start`.
const BASE_URL = (process.env.API_URL ?? 'http://localhost:3000').replace(/\/+$/, '')
const API_URL = BASE_URL.endsWith('/api/payments/charge') ? BASE_URL : `${BASE_URL}/api/payments/charge`

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

async function testConcurrentRequests() {
  const idempotencyKey = crypto.randomUUID()
  const payload = { amount: 5000, customerId: 'cus_123' }

  console.log('Sending 10 concurrent requests with same key...')

  const promises = Array(10)
    .fill()
    .map(() =>
      post(API_URL, payload, {
        'Idempotency-Key': idempotencyKey,
      }).catch((e) => ({ error: e.response?.data || e.message })),
    )

  const results = await Promise.all(promises)

  const successes = results.filter((r) => !r.error)
  const conflicts = results.filter((r) => r.error?.error === 'REQUEST_IN_PROGRESS')

  console.log(`Successes: ${successes.length}`)
  console.log(`Conflicts (409): ${conflicts.length}`)
  console.log('All responses have same charge ID:', new Set(successes.map((r) => r.data?.id)).size === 1)
}

await testConcurrentRequests()
