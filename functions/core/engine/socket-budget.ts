/**
 * A worker's budget of open fetch sockets, whatever the host mix. Each origin's pool keeps idle
 * keep-alive sockets; over thousands of distinct hosts those pile up into more descriptors than a
 * Lambda has (1,024). The budget counts every socket from the moment it is opened until it has
 * closed; when it is full and a new connection is needed, idle sockets (no request running or
 * queued on them) are closed first, least recently used first, and if none is idle the connect
 * waits until a socket closes. A socket with a request on it is never touched.
 *
 * It sits in undici's own extension points: the Agent's `factory` builds each origin's Pool, the
 * Pool's `factory` builds each Client with a connector bound to the budget (one Client holds at
 * most one socket, since pipelining is 1); a Client marks its socket used when it is given a
 * request, and its `drain` event says a request ended, so a waiting connect looks again.
 */
import type { Socket } from 'node:net';
import { Client, Pool, type Dispatcher, type buildConnector } from 'undici';

/** Counters for tests, benchmarks and logs. */
export interface SocketBudgetStats {
  /** The budget. */
  max: number;
  /** Sockets counted now: connecting, open, or closing. */
  inUse: number;
  /** The highest `inUse` seen. */
  peak: number;
  /** Idle sockets closed to make room for another origin's connection. */
  evicted: number;
  /** Connects that found the budget full and waited. */
  waited: number;
}

/**
 * At most `max` sockets open at once, for every dispatcher built with {@link SocketBudget.factory}.
 *
 * @example
 * const budget = new SocketBudget(256);
 * const agent = new Agent({ connections: 8, factory: budget.factory(buildConnector({})) });
 */
export class SocketBudget {
  private inUse = 0;
  private peak = 0;
  private evicted = 0;
  private waited = 0;
  /** Open sockets and the Client each belongs to, least recently used first (a Map keeps insertion order). */
  private readonly open = new Map<Socket, Client>();
  private readonly socketOf = new WeakMap<Client, Socket>();
  /** Connects waiting for a slot, first come first served. */
  private readonly waiting: (() => void)[] = [];
  private pumpQueued = false;
  private pumping = false;
  private pumpAgain = false;

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`socket budget must be a whole number >= 1, got ${max}`);
  }

  stats(): SocketBudgetStats {
    return { max: this.max, inUse: this.inUse, peak: this.peak, evicted: this.evicted, waited: this.waited };
  }

  /**
   * An Agent `factory`: one Pool per origin whose Clients connect through `connect` within the budget.
   * `options` are the Pool options the Agent would have passed (connections, keep-alive, ...).
   * `onSocket` sees each new socket with its Client (e.g. to multiplex once ALPN chose HTTP/2).
   */
  factory(
    connect: buildConnector.connector,
    onSocket?: (client: Client, socket: Socket) => void,
  ): (origin: string | URL, options: object) => Dispatcher {
    const clientFactory = (origin: URL, options: object): Dispatcher => {
      // The connector is bound to the Client it opens sockets for, so the budget can tell idle ones.
      const client: Client = new BudgetedClient(this, origin, {
        ...options,
        connect: (opts, callback) =>
          this.connect(client, connect, opts, (...args: Parameters<buildConnector.Callback>) => {
            if (args[1]) onSocket?.(client, args[1]);
            callback(...args);
          }),
      });
      // A request ended on this Client: its socket may be idle now, and a waiting connect may take its place.
      client.on('drain', () => this.schedulePump());
      return client;
    };
    return (origin, options) => new Pool(origin, { ...options, factory: clientFactory });
  }

  /** A request is being given to this Client: its socket becomes the most recently used. */
  used(client: Client): void {
    const socket = this.socketOf.get(client);
    if (socket && this.open.delete(socket)) this.open.set(socket, client);
  }

  /** Takes a slot (now, or once one frees) and opens the socket; the slot returns when it closes. */
  private connect(client: Client, connect: buildConnector.connector, options: buildConnector.Options, callback: buildConnector.Callback): void {
    const start = () => {
      // The Client was destroyed while its connect waited: open nothing. (A Client that is merely
      // closing still has queued requests to finish, and needs its socket.)
      if (client.destroyed) return callback(new Error('client destroyed before its connection could open'), null);
      this.take();
      let settled = false;
      try {
        connect(options, (error, socket) => {
          if (settled) return;
          settled = true;
          if (error || !socket) {
            // The connector destroyed the socket (its descriptor is closed) before calling back.
            this.release();
            return callback(error ?? new Error('no socket'), null);
          }
          this.open.set(socket, client);
          this.socketOf.set(client, socket);
          socket.once('close', () => {
            this.open.delete(socket);
            if (this.socketOf.get(client) === socket) this.socketOf.delete(client);
            this.release();
          });
          callback(null, socket);
        });
      } catch (error) {
        if (!settled) {
          settled = true;
          this.release();
          callback(error as Error, null);
        }
      }
    };
    if (this.inUse < this.max && this.waiting.length === 0) return start();
    this.waited++;
    this.waiting.push(start);
    this.pump();
  }

  private take(): void {
    this.inUse++;
    if (this.inUse > this.peak) this.peak = this.inUse;
  }

  private release(): void {
    this.inUse--;
    this.pump();
  }

  /** After the Pool has had its chance to give the drained Client its next queued request. */
  private schedulePump(): void {
    if (this.pumpQueued || this.waiting.length === 0) return;
    this.pumpQueued = true;
    queueMicrotask(() => {
      this.pumpQueued = false;
      this.pump();
    });
  }

  /**
   * Starts waiting connects while slots are free; closes idle sockets for those still short of one.
   * A connect can fail synchronously (a blocked literal) and release its slot from inside a pump:
   * that asks for another round instead of recursing, so a long queue cannot overflow the stack.
   */
  private pump(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        this.pumpOnce();
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
  }

  private pumpOnce(): void {
    while (this.waiting.length > 0 && this.inUse < this.max) this.waiting.shift()!();
    let short = this.waiting.length;
    if (short === 0) return;
    // Sockets already being destroyed give their slot back on 'close': count them first.
    for (const socket of this.open.keys()) if (socket.destroyed) short--;
    for (const [socket, client] of this.open) {
      if (short <= 0) return;
      if (socket.destroyed || !isIdle(client)) continue;
      this.evicted++;
      short--;
      // As undici's own keep-alive timeout does: the Client reconnects when it gets a request again.
      socket.destroy();
    }
  }
}

/** A Client that tells the budget when it is given a request, for the least-recently-used order. */
class BudgetedClient extends Client {
  constructor(
    private readonly budget: SocketBudget,
    origin: URL,
    options: Client.Options,
  ) {
    super(origin, options);
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    this.budget.used(this);
    return super.dispatch(options, handler);
  }
}

/** No request running on the Client's socket and none queued for it. */
function isIdle(client: Client): boolean {
  const { running, pending } = client.stats;
  return running === 0 && pending === 0;
}
