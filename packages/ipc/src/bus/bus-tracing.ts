import {
  type Context,
  context,
  ProxyTracerProvider,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { Observable } from 'rxjs';
import type { RequestOptions } from '../rpc/requester.js';
import type { HandlerTrace, HandlerTracer } from '../rpc/responder.js';
import { checkHeaders, type MessageHeaders } from '../wire/headers.js';

/** The instrumentation's name, as exporters show it. */
const TRACER_NAME = '@vring/ipc';

/**
 * OpenTelemetry spans for a bus client, and W3C trace context in message headers: a span
 * per publish (producer), per delivery (consumer), per request (client) and per handled
 * request (server). The context of publish and request goes in their headers
 * (`traceparent`, `tracestate`) through the registered propagator; delivery and handling
 * continue the trace from there. A client makes one only when an SDK is registered (see
 * {@link BusTracing.ifRegistered}): without one it does no work at all.
 * @internal
 */
export class BusTracing implements HandlerTracer {
  readonly #tracer: Tracer;

  private constructor(tracer: Tracer) {
    this.#tracer = tracer;
  }

  /**
   * A BusTracing when an OpenTelemetry SDK has registered a tracer provider, else
   * undefined. Asked once per client, when it connects: the API's own provider, with no
   * SDK behind it, only makes spans that record nothing.
   */
  static ifRegistered(): BusTracing | undefined {
    const provider = trace.getTracerProvider();
    const tracer =
      provider instanceof ProxyTracerProvider
        ? provider.getDelegateTracer(TRACER_NAME)
        : provider.getTracer(TRACER_NAME);
    return tracer ? new BusTracing(tracer) : undefined;
  }

  /** Runs `publish` with `headers` that carry a new producer span's context; ends it with the send. */
  publish(
    topic: string,
    headers: MessageHeaders | undefined,
    publish: (headers: MessageHeaders) => Promise<void>,
  ): Promise<void> {
    const span = this.#tracer.startSpan(`publish ${topic}`, {
      kind: SpanKind.PRODUCER,
      attributes: {
        'messaging.system': 'vring',
        'messaging.operation.name': 'publish',
        'messaging.operation.type': 'send',
        'messaging.destination.name': topic,
      },
    });
    let traced: MessageHeaders;
    try {
      traced = inject(span, headers);
    } catch (error) {
      failed(span, error);
      return Promise.reject(error);
    }
    return settle(span, publish(traced));
  }

  /** A consumer span for a message delivered on `topic`, child of its publish's span. */
  deliver(topic: string, headers: MessageHeaders | undefined): void {
    this.#tracer
      .startSpan(
        `deliver ${topic}`,
        {
          kind: SpanKind.CONSUMER,
          attributes: {
            'messaging.system': 'vring',
            'messaging.operation.name': 'deliver',
            'messaging.operation.type': 'receive',
            'messaging.destination.name': topic,
          },
        },
        extract(headers),
      )
      .end();
  }

  /** Runs `request` with options whose headers carry a new client span's context. */
  request<R>(
    name: string,
    options: RequestOptions | undefined,
    request: (options: RequestOptions) => Promise<R>,
  ): Promise<R> {
    let started: StartedRequest;
    try {
      started = this.#startRequest(name, options);
    } catch (error) {
      return Promise.reject(error);
    }
    return settle(started.span, request(started.options));
  }

  /** {@link BusTracing.request} for a streamed reply: the span lasts until the stream ends. */
  requestStream<R>(
    name: string,
    options: RequestOptions | undefined,
    request: (options: RequestOptions) => Observable<R>,
  ): Observable<R> {
    return new Observable<R>((subscriber) => {
      let started: StartedRequest;
      try {
        started = this.#startRequest(name, options);
      } catch (error) {
        subscriber.error(error);
        return;
      }
      const { span } = started;
      const inner = request(started.options).subscribe({
        next: (value) => subscriber.next(value),
        error: (error: unknown) => {
          failed(span, error);
          subscriber.error(error);
        },
        complete: () => {
          span.end();
          subscriber.complete();
        },
      });
      return () => {
        // Unsubscribed before the end: the span ends with the request, cancelled.
        if (span.isRecording()) span.end();
        inner.unsubscribe();
      };
    });
  }

  /** A server span for a request to `name`, child of its requester's span (see HandlerTracer). */
  start(name: string, headers: MessageHeaders | undefined): HandlerTrace {
    const span = this.#tracer.startSpan(
      `handle ${name}`,
      { kind: SpanKind.SERVER, attributes: { 'rpc.system': 'vring', 'rpc.method': name } },
      extract(headers),
    );
    return new SpanScope(span);
  }

  /**
   * A new client span for a request to `name`, and the request's options with headers that
   * carry its context. Headers the caller got wrong end the span as failed before the throw.
   */
  #startRequest(name: string, options: RequestOptions | undefined): StartedRequest {
    const span = this.#tracer.startSpan(`request ${name}`, {
      kind: SpanKind.CLIENT,
      attributes: { 'rpc.system': 'vring', 'rpc.method': name },
    });
    try {
      return { span, options: { ...options, headers: inject(span, options?.headers) } };
    } catch (error) {
      failed(span, error);
      throw error;
    }
  }
}

/** A request's client span, and its options with headers that carry the span's context. */
interface StartedRequest {
  readonly span: Span;
  readonly options: RequestOptions;
}

/** A handler's span: the handler runs in its context, so its own calls continue the trace. */
class SpanScope implements HandlerTrace {
  readonly #span: Span;
  readonly #context: Context;

  constructor(span: Span) {
    this.#span = span;
    this.#context = trace.setSpan(context.active(), span);
  }

  run<T>(fn: () => T): T {
    return context.with(this.#context, fn);
  }

  end(error?: unknown): void {
    if (error === undefined) this.#span.end();
    else failed(this.#span, error);
  }
}

/**
 * `headers` and the trace context of `span`, in a new object (the caller's stays as it was).
 * @throws VringError `ERR_VRING_INVALID_ARGUMENT` for headers the caller got wrong (checked
 * before they are copied: a copy would hide what was wrong with them).
 */
function inject(span: Span, headers: MessageHeaders | undefined): MessageHeaders {
  if (headers !== undefined) checkHeaders(headers);
  const carrier: Record<string, string> = { ...headers };
  propagation.inject(trace.setSpan(context.active(), span), carrier);
  return carrier;
}

/** The trace context a message's headers carry (none: a new trace). */
function extract(headers: MessageHeaders | undefined): Context {
  return headers ? propagation.extract(ROOT_CONTEXT, headers) : ROOT_CONTEXT;
}

/** Ends `span` when `promise` settles, with an error status if it rejects. */
function settle<T>(span: Span, promise: Promise<T>): Promise<T> {
  return promise.then(
    (value) => {
      span.end();
      return value;
    },
    (error: unknown) => {
      failed(span, error);
      throw error;
    },
  );
}

/** Ends `span` as failed: with the message and code of an Error or of a wire error object. */
function failed(span: Span, error: unknown): void {
  const e = error as { message?: unknown; code?: unknown } | null | undefined;
  const message = typeof e?.message === 'string' ? e.message : String(error);
  const code = e?.code;
  span.setStatus({ code: SpanStatusCode.ERROR, message });
  if (typeof code === 'string') span.setAttribute('error.type', code);
  span.end();
}
