/** Body parsing that keeps the raw bytes, so the fingerprint is taken from what the client sent. */
import type { IncomingMessage, ServerResponse } from 'node:http'
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express'
import { isJsonMediaType, mediaTypeOf } from '../../core/fingerprint.js'
import { bodyParserProblem } from '../../core/problem.js'
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

/**
 * `express.json()` that keeps the raw bytes for the fingerprint (big numbers and `__proto__` intact) and answers
 * its own refusals as problem+json: 413 too large, 400 malformed, 415 not JSON. Never stored: it runs first.
 */
export function json(options: JsonOptions = {}): RequestHandler {
  const parser = express.json({ limit: options.limit ?? '100kb', verify: keepRawBody })
  keepBesideRequests(express.request)
  return function idempotencyJson(req: Request, res: Response, next: NextFunction): void {
    const contentType = req.headers['content-type']
    const withBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0
    if (options.requireJson && withBody && !isJsonMediaType(mediaTypeOf(contentType))) {
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
            : 'The request body is not valid JSON.'
      sendResponse(res, bodyParserProblem(status, detail))
    })
  }
}
