/**
 * The front-end's side of one vhost-user control connection: send a request, wait for its
 * reply (explicit body or REPLY_ACK), with a deadline. One request at a time: vhost-user has
 * no request ids, so a reply is matched to the one request in flight.
 *
 * @packageDocumentation
 */
import { VringError } from '../errors.js';
import type { FdSocket } from '../fd-socket.js';
import { closeFds, decodeReply } from './message-decoder.js';
import { encodeRequest } from './message-encoder.js';
import {
  type ReplyBodies,
  type RequestPayloads,
  requestName,
  type SupportedRequest,
  VhostUserRequest,
} from './message-layout.js';
import { noticeError } from './refusal-notice.js';

/** Deadlines of a {@link FrontendConnection}. @internal */
export interface FrontendConnectionTimeouts {
  /** How long to wait for an ordinary reply, in ms. */
  replyMs: number;
  /**
   * How long to wait for the SET_MEM_TABLE ack, in ms. A back-end that mlocks our region
   * (testpmd without `--no-mlockall`) faults in every page of it before it answers, which
   * takes seconds for a large region.
   */
  memoryTableMs: number;
}

/**
 * Request/reply over a connected vhost-user socket for the front-end. After a timeout or a
 * malformed reply the connection is in an unknown state — a late reply would be taken for the
 * next request's — so the caller must close it. A NACK leaves it in step (the back-end
 * answered and kept the connection), so a caller may go on after one.
 * @internal
 */
export class FrontendConnection {
  /** Whether PROTOCOL_F_REPLY_ACK was negotiated: then every request without a body asks for an ack. */
  replyAck = false;
  readonly #socket: FdSocket;
  readonly #timeouts: FrontendConnectionTimeouts;

  readonly #signal: AbortSignal | undefined;

  /** `signal` abandons a pending reply wait (e.g. the caller gave up on the handshake). */
  constructor(socket: FdSocket, timeouts: FrontendConnectionTimeouts, signal?: AbortSignal) {
    this.#socket = socket;
    this.#timeouts = timeouts;
    this.#signal = signal;
  }

  /**
   * Sends a request that has no reply body. With REPLY_ACK negotiated it sets NEED_REPLY
   * and waits for the ack, so a back-end's refusal surfaces at the request that caused it
   * instead of as a dead device later.
   * @throws VringError `ERR_VRING_PROTOCOL` (reason `nack`) when the back-end refused it,
   * `ERR_VRING_TIMEOUT`, or the socket's error.
   */
  async command<R extends Exclude<SupportedRequest, keyof ReplyBodies>>(
    request: R,
    payload: RequestPayloads[R],
  ): Promise<void> {
    const { frame, fds } = encodeRequest(request, payload, { needReply: this.replyAck });
    await this.#send(frame, fds);
    if (!this.replyAck) return;
    const ack = await this.#reply(request);
    if (ack !== 0n) {
      throw new VringError(
        'ERR_VRING_PROTOCOL',
        `the back-end refused ${requestName(request)} (ack ${ack})`,
        { reason: 'nack' },
      );
    }
  }

  /**
   * Sends a request with an explicit reply body and returns the body.
   * @throws VringError `ERR_VRING_PROTOCOL` for a malformed reply, `ERR_VRING_TIMEOUT`, or
   * the socket's error.
   */
  async query<R extends keyof ReplyBodies & SupportedRequest>(
    request: R,
    payload: RequestPayloads[R],
  ): Promise<ReplyBodies[R]> {
    const { frame, fds } = encodeRequest(request, payload);
    await this.#send(frame, fds);
    return (await this.#reply(request)) as ReplyBodies[R];
  }

  /**
   * A back-end that refused us (or found us over a limit) may have closed before our request
   * went out: the send then fails with a disconnect while its notice still waits, unread, in
   * our socket.
   */
  async #send(frame: Uint8Array, fds: readonly number[]): Promise<void> {
    try {
      await this.#socket.send(frame, fds);
    } catch (error) {
      if (error instanceof VringError && error.code === 'ERR_VRING_PEER_DISCONNECTED') {
        const last = await this.#socket
          .receive({ signal: AbortSignal.timeout(this.#timeouts.replyMs) })
          .catch(() => undefined);
        if (last) closeFds(last.fds);
        const notice = last && noticeError(last.data, 'back-end');
        if (notice) throw notice;
      }
      throw error;
    }
  }

  async #reply<R extends SupportedRequest>(request: R): Promise<ReplyBodies[keyof ReplyBodies]> {
    const ms =
      request === VhostUserRequest.SET_MEM_TABLE || request === VhostUserRequest.ADD_MEM_REG
        ? this.#timeouts.memoryTableMs
        : this.#timeouts.replyMs;
    const deadline = AbortSignal.timeout(ms);
    const signal = this.#signal ? AbortSignal.any([deadline, this.#signal]) : deadline;
    let message: Awaited<ReturnType<FdSocket['receive']>>;
    try {
      message = await this.#socket.receive({ signal });
    } catch (error) {
      if (deadline.aborted && !(error instanceof VringError)) {
        throw new VringError(
          'ERR_VRING_TIMEOUT',
          `no reply to ${requestName(request)} within ${ms} ms`,
        );
      }
      throw error;
    }
    const notice = noticeError(message.data, 'back-end');
    if (notice) {
      closeFds(message.fds);
      throw notice;
    }
    return decodeReply(message.data, message.fds, request) as ReplyBodies[keyof ReplyBodies];
  }
}
