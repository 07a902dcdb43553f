/** `@Idempotent()` and `@IdempotencyLease()`: the decorators only configure; the interceptor and capture act. */
import { type CustomDecorator, createParamDecorator, type ExecutionContext, SetMetadata } from '@nestjs/common'
import type { Lease } from '../../core/lease.js'
import { type RouteOptions, resolveRoute } from '../../core/options.js'

/** The metadata key `@Idempotent()` writes on a handler or a controller class. */
export const IDEMPOTENT_OPTIONS = 'idempotency-kit:idempotent'

/**
 * Marks a route (or every route of a controller) as idempotent, with its own options; without it a route is
 * untouched. It covers the route's own method (DELETE too) unless `methods` says otherwise; GET, HEAD and OPTIONS
 * always pass. Invalid options throw `IdempotencyConfigError` when the class is defined, not on a request.
 *
 * @example
 * @Post('charge')
 * @Idempotent({ required: true, onConflict: 'wait' })
 * charge(@Body() body: ChargeDto, @IdempotencyLease() lease: Lease) {}
 */
export function Idempotent(options: RouteOptions = {}): CustomDecorator<typeof IDEMPOTENT_OPTIONS> {
  resolveRoute(options)
  return SetMetadata(IDEMPOTENT_OPTIONS, options)
}

/** The lease of this execution (`req.idempotency`), or undefined when the route ran without a key. */
export const IdempotencyLease: () => ParameterDecorator = createParamDecorator(
  (_data: unknown, context: ExecutionContext): Lease | undefined =>
    (context.switchToHttp().getRequest() as { idempotency?: Lease }).idempotency,
)
