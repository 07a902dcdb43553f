/** Body parsing that keeps the raw bytes, so the fingerprint is taken from what the client sent. */
import type { IncomingMessage, ServerResponse } from 'node:http'
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express'
import { isJsonMediaType, mediaTypeOf } from '../../core/fingerprint.js'
import { bodyParserProblem } from '../../core/problem.js'
import { hasBody } from '../node/engine-request.js'
import { sendResponse } from '../node/send-response.js'
import { type Kept, keepBesideRequests, RAW_BODY } from './request-state.js'

/** A `verify` function for any body-parser parser (`express.json`, `express.urlencoded`, …) that keeps the bytes. */
export function keepRawBody(req: IncomingMessage, _res: ServerResponse, buffer: Buffer): void {
  ;(req as Kept)[RAW_BODY] = buffer
}

export interface JsonOptions {
  /** Largest body accepted; larger → 413. Default '100kb' (body-parser's). */
  readonly limit?: number | string
  /** A request with a body that is not JSON → 415 instead of passing on. Default false. */
  readonly requireJson?: boolean
}

interface ParserError {
  status?: number
  type?: string
}

const UNITS: Readonly<Record<string, number>> = { b: 1, kb: 2 ** 10, mb: 2 ** 20, gb: 2 ** 30 }

/** The limit in bytes as body-parser reads it ('100kb', '1.5mb', 1024); undefined when it reads it otherwise. */
function bytesOf(limit: number | string): number | undefined {
  if (typeof limit === 'number') return Number.isFinite(limit) && limit >= 0 ? limit : undefined
  const match = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i.exec(limit)
  if (match === null) return undefined
  return Math.floor(Number(match[1]) * (UNITS[(match[2] ?? 'b').toLowerCase()] as number))
}

/** `application/json`, UTF-8 or no charset: the one media type read without body-parser. */
function isPlainJson(contentType: string | undefined): boolean {
  if (contentType === undefined) return false
  const type = contentType.toLowerCase()
  return type === 'application/json' || type === 'application/json; charset=utf-8'
}

/**
 * The common request read here: plain JSON, not encoded, with a Content-Length within the limit, not read yet.
 * Anything else (chunked, compressed, another charset, too large, empty) goes to body-parser, which answers
 * each of those as before.
 */
function readsPlainly(req: Request, limit: number | undefined): boolean {
  const { headers } = req
  if (limit === undefined || headers['content-encoding'] !== undefined || headers['transfer-encoding'] !== undefined) {
    return false
  }
  const length = Number(headers['content-length'])
  return length > 0 && length <= limit && isPlainJson(headers['content-type']) && !(req.complete && !req.readable)
}

const NOT_JSON = 'The request body is not valid JSON.'

/** A plain JSON body being read. */
interface PlainRead {
  readonly res: Response
  readonly next: NextFunction
  readonly expected: number
  first: Buffer | undefined
  more: Buffer[] | undefined
  received: number
}

/** The reads in progress, by request: the listeners are shared functions, not closures per request. */
const reads = new WeakMap<IncomingMessage, PlainRead>()

function stopReading(req: IncomingMessage): PlainRead | undefined {
  req.removeListener('data', onPlainData)
  req.removeListener('end', onPlainEnd)
  req.removeListener('error', onPlainError)
  const read = reads.get(req)
  reads.delete(req)
  return read
}

function refuse(res: Response): void {
  sendResponse(res, bodyParserProblem(400, NOT_JSON))
}

function onPlainData(this: IncomingMessage, chunk: Buffer): void {
  const read = reads.get(this) as PlainRead
  read.received += chunk.byteLength
  if (read.received > read.expected) {
    stopReading(this)
    // Answered once the rest is read, as body-parser does: the connection stays usable.
    this.once('end', () => refuse(read.res))
    this.resume()
    return
  }
  if (read.first === undefined) read.first = chunk
  else if (read.more === undefined) read.more = [chunk]
  else read.more.push(chunk)
}

function onPlainEnd(this: IncomingMessage): void {
  const read = stopReading(this) as PlainRead
  const { first, more, received, res } = read
  if (received !== read.expected || first === undefined) {
    refuse(res)
    return
  }
  const body = more === undefined ? first : Buffer.concat([first, ...more], received)
  keepRawBody(this, res, body)
  let text = body.toString('utf8')
  // iconv-lite, which body-parser decodes with, drops a byte order mark.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1)
  const start = /[^ \t\n\r]/.exec(text)?.[0]
  try {
    // Strict, as body-parser's default: only an object or an array.
    if (start !== '{' && start !== '[') throw new SyntaxError('not an object or array')
    ;(this as Request).body = JSON.parse(text)
    // As body-parser 1.x marks it, so a second JSON parser (Express 4) skips this request.
    ;(this as Kept)._body = true
  } catch {
    refuse(res)
    return
  }
  read.next()
}

function onPlainError(this: IncomingMessage): void {
  // The client went away ('aborted') or the stream failed: answered if anything still can be.
  const read = stopReading(this)
  if (read !== undefined && !read.res.headersSent) refuse(read.res)
}

/** Reads a plain JSON body (`readsPlainly`), keeps its bytes, and parses it as body-parser would (strict). */
function readPlainly(req: Request, res: Response, next: NextFunction): void {
  const expected = Number(req.headers['content-length'])
  reads.set(req, { res, next, expected, first: undefined, more: undefined, received: 0 })
  req.on('data', onPlainData)
  req.on('end', onPlainEnd)
  req.on('error', onPlainError)
}

/**
 * `express.json()` that keeps the raw bytes for the fingerprint (big numbers and `__proto__` intact) and answers
 * its own refusals as problem+json: 413 too large, 400 malformed, 415 not JSON. Never stored: it runs first.
 * A plain JSON body with its length is read here; every other body goes through `express.json()`.
 */
export function json(options: JsonOptions = {}): RequestHandler {
  const parser = express.json({ limit: options.limit ?? '100kb', verify: keepRawBody })
  const limit = bytesOf(options.limit ?? '100kb')
  keepBesideRequests(express.request)
  return function idempotencyJson(req: Request, res: Response, next: NextFunction): void {
    if (readsPlainly(req, limit)) {
      readPlainly(req, res, next)
      return
    }
    const contentType = req.headers['content-type']
    if (options.requireJson && hasBody(req.headers) && !isJsonMediaType(mediaTypeOf(contentType))) {
      sendResponse(res, bodyParserProblem(415, 'The request body must be application/json.'))
      return
    }
    parser(req, res, (error?: unknown) => {
      if (error === undefined || error === null) return next()
      const e = error as ParserError
      const status = e.type === 'entity.too.large' ? 413 : e.type?.endsWith('unsupported') ? 415 : 400
      const detail =
        status === 413
          ? 'The request body is larger than this endpoint accepts.'
          : status === 415
            ? 'The request body encoding or charset is not supported.'
            : NOT_JSON
      sendResponse(res, bodyParserProblem(status, detail))
    })
  }
}
