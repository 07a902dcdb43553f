/** `IdempotencyModule`: one engine for the app and the global interceptor that applies `@Idempotent()` routes. */
import type { BeforeApplicationShutdown, DynamicModule, InjectionToken, ModuleMetadata } from '@nestjs/common'
import { APP_INTERCEPTOR } from '@nestjs/core'
import type { Idempotency } from '../../core/engine.js'
import type { IdempotencyOptions } from '../../core/options.js'
import { createIdempotency } from '../../create-idempotency.js'
import { IdempotencyInterceptor } from './idempotency-interceptor.js'

/** Injection token of the app's engine (`@Inject(IDEMPOTENCY_ENGINE) engine: Idempotency`). */
export const IDEMPOTENCY_ENGINE = Symbol.for('idempotency-kit.nestjs.engine')
const MODULE_OPTIONS = Symbol.for('idempotency-kit.nestjs.options')

/**
 * An engine (shared, closed by its owner) or the options to make one (closed by the module on shutdown); engine-wide
 * route options are the defaults `@Idempotent()` overrides. `Req` is the platform's request type.
 */
export type IdempotencyModuleOptions<Req = never> = (IdempotencyOptions | { readonly engine: Idempotency }) & {
  /**
   * The authenticated principal's id (never the credential, which rotates). It runs after every guard, so a
   * passport guard's `req.user` is there. Default: unscoped.
   */
  readonly scope?: (request: Req) => string | undefined
  /** How long shutdown lets running handlers finish before releasing uncommitted ones. Default 10 s. */
  readonly shutdownGraceMs?: number
}

/** `forRootAsync`: options from a factory with injected dependencies (a config service, a Redis client). */
export interface IdempotencyModuleAsyncOptions<Req = never> extends Pick<ModuleMetadata, 'imports'> {
  readonly useFactory: (...args: never[]) => IdempotencyModuleOptions<Req> | Promise<IdempotencyModuleOptions<Req>>
  readonly inject?: InjectionToken[]
}

/** Closes an engine the module made, once the app stops taking requests (`app.enableShutdownHooks()`, `app.close()`). */
class EngineOwner implements BeforeApplicationShutdown {
  constructor(
    readonly engine: Idempotency,
    private readonly options: IdempotencyModuleOptions<unknown>,
  ) {}

  async beforeApplicationShutdown(): Promise<void> {
    if ('engine' in this.options) return
    await this.engine.close({ graceMs: this.options.shutdownGraceMs ?? 10_000 })
  }
}

const ENGINE_OWNER = Symbol.for('idempotency-kit.nestjs.engine-owner')

function providers() {
  return [
    {
      provide: ENGINE_OWNER,
      useFactory: (options: IdempotencyModuleOptions<unknown>) =>
        new EngineOwner('engine' in options ? options.engine : createIdempotency(options), options),
      inject: [MODULE_OPTIONS],
    },
    { provide: IDEMPOTENCY_ENGINE, useFactory: (owner: EngineOwner) => owner.engine, inject: [ENGINE_OWNER] },
    {
      provide: APP_INTERCEPTOR,
      useFactory: (engine: Idempotency, options: IdempotencyModuleOptions<unknown>) =>
        new IdempotencyInterceptor(engine, options.scope),
      inject: [IDEMPOTENCY_ENGINE, MODULE_OPTIONS],
    },
  ]
}

/**
 * Import once in the root module. Routes opt in with `@Idempotent()`; the others are untouched.
 *
 * @example
 * IdempotencyModule.forRoot({ store: new RedisStore({ client }), scope: (req: Request) => req.user?.id })
 */
// biome-ignore lint/complexity/noStaticOnlyClass: Nest identifies a dynamic module by its class.
export class IdempotencyModule {
  /** Makes (or adopts) the engine and registers the interceptor app-wide. */
  static forRoot<Req = never>(options: IdempotencyModuleOptions<Req>): DynamicModule {
    return {
      module: IdempotencyModule,
      global: true,
      providers: [{ provide: MODULE_OPTIONS, useValue: options }, ...providers()],
      exports: [IDEMPOTENCY_ENGINE],
    }
  }

  /** Like `forRoot`, with options from a factory. */
  static forRootAsync<Req = never>(options: IdempotencyModuleAsyncOptions<Req>): DynamicModule {
    return {
      module: IdempotencyModule,
      global: true,
      imports: options.imports ?? [],
      providers: [
        { provide: MODULE_OPTIONS, useFactory: options.useFactory, inject: options.inject ?? [] },
        ...providers(),
      ],
      exports: [IDEMPOTENCY_ENGINE],
    }
  }
}
