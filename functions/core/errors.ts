/**
 * fanout's errors, in one file. First those that reach a user: each names what was wrong (a line, a
 * field, an id) so the CLI can print it with exit code 2 and the API can answer it as
 * application/problem+json. Then the failures of one fetch, each with a stable `code`, which end up
 * as a record's error.
 */
import type { z } from 'zod';
import { PROXY_DEFAULTS } from './engine/proxy-url.ts';

/** Base of every error fanout reports to a user rather than crashing on. */
export class FanoutError extends Error {
  /** HTTP status the API answers with. */
  readonly status: number = 500;
  /** Short, stable title for problem+json. */
  readonly title: string = 'Internal error';
  override name = 'FanoutError';
}

/** Bad input: a line that is not an http(s) URL, malformed NDJSON or JSON, a bad field. */
export class InputError extends FanoutError {
  override readonly status = 400;
  override readonly title = 'Invalid input';
  override name = 'InputError';
  constructor(
    message: string,
    /** 1-based line of the input, when the error belongs to one. */
    readonly line?: number,
    /** Dotted path of the offending field, when there is one. */
    readonly field?: string,
  ) {
    super(line === undefined ? message : `line ${line}: ${message}`);
  }
}

/** A job option out of range, of the wrong type, or unknown. */
export class OptionsError extends FanoutError {
  override readonly status = 400;
  override readonly title = 'Invalid option';
  override name = 'OptionsError';
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }

  static fromZod(error: z.ZodError, prefix = 'option'): OptionsError {
    const issue = error.issues[0]!;
    if (issue.code === 'unrecognized_keys') {
      const key = issue.keys[0]!;
      return new OptionsError(`unknown ${prefix} "${[...issue.path, key].join('.')}"`, key);
    }
    const field = issue.path.join('.');
    if (issue.code === 'invalid_key') {
      // A map's key (a header name): say which, and why, rather than zod's "Invalid key in record".
      const key = String(issue.path.at(-1));
      return new OptionsError(`${prefix} "${field}": ${JSON.stringify(key)} ${issue.issues[0]?.message ?? 'is not a valid name'}`, field);
    }
    return new OptionsError(`${prefix} "${field}": ${issue.message}`, field);
  }
}

/** The input held no URL at all. */
export class EmptyInputError extends InputError {
  override name = 'EmptyInputError';
  constructor() {
    super('the input holds no URL');
  }
}

/**
 * A secret (the API token, a header value, a proxy or callback secret) cannot be read from its store
 * just now: it timed out or was throttled. The API answers 503 with Retry-After; a chunk that needs
 * it is tried again. A secret that is missing, empty or not readable by the role is not this.
 */
export class SecretUnavailableError extends FanoutError {
  override readonly status = 503;
  override readonly title = 'Service Unavailable';
  override name = 'SecretUnavailableError';
}

/** An id that is not one of ours (malformed), or a job that does not exist. */
export class NotFoundError extends FanoutError {
  override readonly status = 404;
  override readonly title = 'Not found';
  override name = 'NotFoundError';
}

/** A key that would leave the store's namespace (path traversal, absolute paths, odd characters). */
export class InvalidKeyError extends FanoutError {
  override readonly status = 400;
  override readonly title = 'Invalid key';
  override name = 'InvalidKeyError';
  constructor(key: string) {
    super(`invalid object key ${JSON.stringify(key.slice(0, 200))}`);
  }
}

/** An id that cannot be one of ours: refused before it reaches the store. */
export class MalformedIdError extends FanoutError {
  override readonly status = 400;
  override readonly title = 'Malformed id';
  override name = 'MalformedIdError';
}

/** A command line or request that cannot be acted on as given. */
export class UsageError extends FanoutError {
  override readonly status = 400;
  override readonly title = 'Bad request';
  override name = 'UsageError';
}

/** A query parameter that cannot be acted on: a filter naming no known value, a cursor not ours. */
export class QueryError extends FanoutError {
  override readonly status = 400;
  override readonly title = 'Invalid query parameter';
  override name = 'QueryError';
  constructor(
    message: string,
    /** The parameter at fault. */
    readonly field: string,
  ) {
    super(message);
  }
}

/**
 * An operator setting (an environment variable) that cannot be used as given: the server, the CLI
 * and the worker refuse to start rather than run with a guessed value. The message names the
 * variable and the offending entry.
 */
export class ConfigError extends FanoutError {
  override readonly status = 400;
  override readonly title = 'Invalid configuration';
  override name = 'ConfigError';
}

/** An upload that cannot be used: already submitted (it plans one job), or expired. */
export class UploadUsedError extends FanoutError {
  override readonly status = 409;
  override readonly title = 'Upload already used';
  override name = 'UploadUsedError';
  readonly field = 'upload';
}

/** Too many upload slots waiting for their list or their submission (the embedded runtime bounds them). */
export class TooManyUploadsError extends FanoutError {
  override readonly status = 429;
  override readonly title = 'Too many pending uploads';
  override name = 'TooManyUploadsError';
}

// Failures of a fetch: never thrown to a user, each ends one URL's record with an error; the stable
// `code` is what core/engine/classify.ts maps to the record's error code.

/** Raised by the connector when the guard refuses an address; the record gets `blocked`. */
export class BlockedAddressError extends Error {
  readonly code = 'FANOUT_BLOCKED';
  override name = 'BlockedAddressError';
  constructor(
    readonly host: string,
    readonly address: string,
  ) {
    super(
      (host === address
        ? `${address} is a private address; the server's guard blocks it`
        : `${host} resolves to ${address}, a private address; the server's guard blocks it`) +
        ` (an operator allows it with FANOUT_ALLOW_CIDRS=${address.includes(':') ? `${address}/128` : `${address}/32`} or FANOUT_ALLOW_PRIVATE=1)`,
    );
  }
}

/**
 * The proxy refused to carry a request: a CONNECT answered with another status than 200, or 407
 * (Proxy Authentication Required) to a plain-http request. Other answers of a proxy to a plain-http
 * request (403, 502...) are the record's response, as curl shows them.
 */
export class ProxyRefusedError extends Error {
  readonly code = 'FANOUT_PROXY';
  override name = 'ProxyRefusedError';
  constructor(
    readonly proxy: string,
    readonly status: number,
  ) {
    super(
      status === 407
        ? `the proxy ${proxy} answered 407 Proxy Authentication Required: set (or check) ${PROXY_DEFAULTS.authEnv}=user:password (a server sends it only to the proxies in ${PROXY_DEFAULTS.authForEnv})`
        : `the proxy ${proxy} refused the tunnel with status ${status}`,
    );
  }
}

/** A failure of the response itself (not of the network): the record gets `protocol` and this message. */
export class ResponseProtocolError extends Error {
  override name = 'ResponseProtocolError';
  readonly code = 'FANOUT_PROTOCOL';
}
