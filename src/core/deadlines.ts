/**
 * Deadlines of one fixed duration share one timer. Every store call and every lease needs a deadline, and nearly
 * all of them are cancelled within microseconds; a timer per deadline costs more than the memory store's work.
 */

const now = () => performance.now()

/** What `setTimeout` returns: a Node `Timeout` (with `ref`/`unref`) or, elsewhere, a number. */
type Timer = ReturnType<typeof setTimeout> & { ref?(): unknown; unref?(): unknown }

/** A deadline as its queue sees it, whatever its argument's type. */
interface Entry {
  readonly at: number
  readonly pending: boolean
  run(): boolean
}

/** One scheduled call; `cancel` it once it is no longer needed. */
export class Deadline<A = unknown> implements Entry {
  /** When it fires, on `performance.now()`'s clock. */
  readonly at: number
  #fn: ((arg: A) => void) | undefined
  #arg: A | undefined
  readonly #queue: Queue

  constructor(queue: Queue, at: number, fn: (arg: A) => void, arg: A) {
    this.#queue = queue
    this.at = at
    this.#fn = fn
    this.#arg = arg
  }

  /** Whether it has neither fired nor been cancelled. */
  get pending(): boolean {
    return this.#fn !== undefined
  }

  /** It will not fire; cancelling twice, or after it fired, does nothing. */
  cancel(): void {
    if (this.#fn === undefined) return
    this.#fn = undefined
    this.#arg = undefined
    this.#queue.cancelled()
  }

  /** Runs the call once; answers false when it had been cancelled. */
  run(): boolean {
    const fn = this.#fn
    if (fn === undefined) return false
    const arg = this.#arg as A
    this.#fn = undefined
    this.#arg = undefined
    fn(arg)
    return true
  }
}

/**
 * The deadlines of one duration in the order they were set, which is the order they are due in (the clock is
 * monotonic). One timer for the earliest; it keeps the process alive only while a deadline is pending, as a
 * timer per deadline would.
 */
class Queue {
  readonly #ms: number
  #items: Entry[] = []
  #head = 0
  #live = 0
  #timer: Timer | undefined
  #refed = false
  /** Set while due calls run: a call that adds or cancels a deadline leaves the list and the timer to `fire`. */
  #firing = false

  constructor(ms: number) {
    this.#ms = ms
  }

  add<A>(fn: (arg: A) => void, arg: A): Deadline<A> {
    const at = now() + this.#ms
    const deadline = new Deadline(this, at, fn, arg)
    this.#items.push(deadline)
    this.#live++
    if (this.#firing) return deadline
    if (this.#timer === undefined) this.#arm(this.#ms)
    else if (!this.#refed) this.#ref(true)
    return deadline
  }

  cancelled(): void {
    this.#live--
    if (this.#firing) return
    // Sequential calls settle in order: drop them from the front so the queue stays short.
    const items = this.#items
    while (this.#head < items.length && !(items[this.#head] as Entry).pending) this.#head++
    if (this.#head === items.length) {
      items.length = 0
      this.#head = 0
    } else if (this.#head > 1024 && this.#head * 2 > items.length) {
      this.#items = items.slice(this.#head)
      this.#head = 0
    }
    if (this.#live === 0) this.#ref(false)
  }

  #arm(delay: number): void {
    this.#timer = setTimeout(fire, Math.max(1, Math.ceil(delay)), this) as Timer
    this.#refed = true
  }

  #ref(on: boolean): void {
    const timer = this.#timer
    if (timer === undefined) return
    if (typeof timer.unref !== 'function' || typeof timer.ref !== 'function') {
      // No ref counting here (not Node): a timer with nothing to do is simply stopped.
      if (!on) {
        clearTimeout(timer)
        this.#timer = undefined
        queues.delete(this.#ms)
      }
      return
    }
    if (on) timer.ref()
    else timer.unref()
    this.#refed = on
  }

  /** The timer fired: run what is due, then arm for the next pending one, or retire the queue. */
  fire(): void {
    this.#timer = undefined
    const t = now()
    const items = this.#items
    let failure: { error: unknown } | undefined
    this.#firing = true
    while (this.#head < items.length) {
      const deadline = items[this.#head] as Entry
      if (deadline.pending && deadline.at > t) break
      this.#head++
      if (!deadline.pending) continue
      this.#live--
      try {
        deadline.run()
      } catch (error) {
        // Reported as the timer's own exception would be, after the other due calls ran.
        failure ??= { error }
      }
    }
    this.#firing = false
    if (this.#head === items.length) {
      items.length = 0
      this.#head = 0
    }
    const next = items[this.#head]
    if (next === undefined) {
      if (queues.get(this.#ms) === this) queues.delete(this.#ms)
    } else {
      this.#arm(next.at - t)
      if (this.#live === 0) this.#ref(false)
    }
    if (failure !== undefined) {
      const { error } = failure
      queueMicrotask(() => {
        throw error
      })
    }
  }
}

function fire(queue: Queue): void {
  queue.fire()
}

const queues = new Map<number, Queue>()

/**
 * Calls `fn(arg)` after `ms` milliseconds unless cancelled first. Meant for a few fixed durations (store
 * deadlines, the lease's first check): each distinct `ms` keeps a queue while it has deadlines.
 */
export function setDeadline<A>(ms: number, fn: (arg: A) => void, arg: A): Deadline<A> {
  let queue = queues.get(ms)
  if (queue === undefined) {
    queue = new Queue(ms)
    queues.set(ms, queue)
  }
  return queue.add(fn, arg)
}
