/**
 * The front-end handshake, in the order DPDK 22.11's virtio_user sends it, so a back-end
 * that accepts DPDK accepts us: SET_OWNER, GET_FEATURES, GET/SET_PROTOCOL_FEATURES,
 * SET_FEATURES, SET_STATUS 0xB, SET_MEM_TABLE, per vring NUM/BASE/ADDR/CALL/KICK,
 * SET_VRING_ENABLE, SET_STATUS 0xF. It is split in two because the rings can only be laid out once the
 * features are known (mergeable buffers and EVENT_IDX change how the driver uses them).
 *
 * @packageDocumentation
 */
import { fstatSync } from 'node:fs';
import { VringError } from '../errors.js';
import {
  describeFeatures,
  negotiate,
  requireFeatures,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS,
  VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD,
  VHOST_USER_PROTOCOL_F_MQ,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
  VHOST_USER_PROTOCOL_F_STATUS,
  VIRTIO_STATUS_ACKNOWLEDGE,
  VIRTIO_STATUS_DRIVER,
  VIRTIO_STATUS_DRIVER_OK,
  VIRTIO_STATUS_FEATURES_OK,
} from './features.js';
import type { FrontendConnection } from './frontend-connection.js';
import { inflightQueueBytes } from './inflight-region.js';
import { closeFds, protocolError } from './message-decoder.js';
import { type InflightArea, VhostUserRequest as R } from './message-layout.js';

/**
 * Protocol features we ask for: the set DPDK's virtio_user asks for. MQ is harmless with one
 * queue pair and keeps our SET_PROTOCOL_FEATURES identical to DPDK's (0x10009 against
 * net_vhost).
 */
const WANTED_PROTOCOL_FEATURES =
  VHOST_USER_PROTOCOL_F_MQ | VHOST_USER_PROTOCOL_F_REPLY_ACK | VHOST_USER_PROTOCOL_F_STATUS;

const STATUS_FEATURES_OK =
  VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;

/** What the two sides agreed on for one connection. @internal */
export interface NegotiatedFeatures {
  /** The virtio feature word sent with SET_FEATURES. */
  readonly features: bigint;
  /** The protocol feature word sent with SET_PROTOCOL_FEATURES (0 when bit 30 is off). */
  readonly protocolFeatures: bigint;
}

/** What the front-end wants from the virtio feature word. @internal */
export interface FeatureRequest {
  /** Bits to take when offered. */
  readonly wanted: bigint;
  /** Bits the connection cannot work without. */
  readonly required: bigint;
  /**
   * On a reconnect: the word the rings were built for. The new back-end must offer every
   * bit of it and gets exactly it, because the rings' mode cannot change under them.
   */
  readonly fixed?: bigint | undefined;
  /** Protocol features to ask for on top of DPDK's set (taken when offered). */
  readonly extraProtocol?: bigint | undefined;
  /**
   * Queue pairs the front-end drives (default 1). More than one needs PROTOCOL_F_MQ, and
   * GET_QUEUE_NUM must report at least as many.
   */
  readonly queuePairs?: number | undefined;
}

/** One vring as the device must see it. @internal */
export interface VringSetup {
  readonly index: number;
  readonly size: number;
  /** Next avail index the device processes (split: the device's used index). */
  readonly base: number;
  readonly desc: bigint;
  readonly avail: bigint;
  readonly used: bigint;
  readonly kickFd: number;
  readonly callFd: number;
}

/** The memory and rings to hand over. @internal */
export interface DeviceSetup {
  /** The regions (one per queue pair); GPA = UVA = the address in this process, as DPDK's virtio_user does. */
  readonly regions: ReadonlyArray<{
    readonly fd: number;
    readonly address: bigint;
    readonly size: number;
  }>;
  readonly vrings: readonly VringSetup[];
}

/**
 * SET_OWNER, feature and protocol-feature negotiation by intersection, SET_FEATURES and —
 * with PROTOCOL_F_STATUS — SET_STATUS FEATURES_OK read back with GET_STATUS (the virtio
 * driver's check that the device accepted the features). Turns on REPLY_ACK on `connection`
 * when negotiated, so every later request is acknowledged.
 * @throws VringError `ERR_VRING_FEATURE_MISMATCH` when a required (or, on reconnect, fixed)
 * bit is not offered or the device refuses FEATURES_OK; protocol and timeout errors of the
 * connection.
 * @internal
 */
export async function negotiateFeatures(
  connection: FrontendConnection,
  request: FeatureRequest,
): Promise<NegotiatedFeatures> {
  // SET_OWNER on every connection, including replays: a restarted back-end is a new
  // session, and DPDK treats it as a no-op anyway.
  await connection.command(R.SET_OWNER, undefined);
  const offered = await connection.query(R.GET_FEATURES, undefined);
  let features: bigint;
  if (request.fixed !== undefined) {
    const missing = request.fixed & ~offered;
    if (missing !== 0n) {
      throw new VringError(
        'ERR_VRING_FEATURE_MISMATCH',
        `the back-end no longer offers ${describeFeatures(missing)}, which the rings were built for`,
        { reason: 'features-changed' },
      );
    }
    features = request.fixed;
  } else {
    features = negotiate(offered, request.wanted);
    requireFeatures(features, request.required, 'virtio');
  }
  let protocolFeatures = 0n;
  if ((features & VHOST_USER_F_PROTOCOL_FEATURES) !== 0n) {
    const offeredProtocol = await connection.query(R.GET_PROTOCOL_FEATURES, undefined);
    protocolFeatures = negotiate(
      offeredProtocol,
      WANTED_PROTOCOL_FEATURES | (request.extraProtocol ?? 0n),
    );
    await connection.command(R.SET_PROTOCOL_FEATURES, protocolFeatures);
    // Only now may NEED_REPLY be set (vhost-user spec, REPLY_ACK).
    connection.replyAck = (protocolFeatures & VHOST_USER_PROTOCOL_F_REPLY_ACK) !== 0n;
  }
  await checkQueuePairs(connection, protocolFeatures, request.queuePairs ?? 1);
  await connection.command(R.SET_FEATURES, features);
  if ((protocolFeatures & VHOST_USER_PROTOCOL_F_STATUS) !== 0n) {
    await connection.command(R.SET_STATUS, STATUS_FEATURES_OK);
    const status = await connection.query(R.GET_STATUS, undefined);
    if ((status & VIRTIO_STATUS_FEATURES_OK) === 0n) {
      throw new VringError(
        'ERR_VRING_FEATURE_MISMATCH',
        `the back-end did not accept features ${describeFeatures(features)} (status 0x${status.toString(16)})`,
        { reason: 'features-not-ok' },
      );
    }
  }
  return { features, protocolFeatures };
}

/**
 * With INFLIGHT_SHMFD negotiated: the first back-end is asked for an in-flight record
 * (GET_INFLIGHT_FD for `numQueues` queues of `queueSize`), and every back-end, the first
 * included, is handed the record kept so far (SET_INFLIGHT_FD), before the memory table and
 * the rings, as QEMU does. A restarted back-end finds there what its predecessor had taken
 * and not returned. Returns the record to keep (the caller closes its fd); without the
 * feature, `kept` unchanged and nothing sent.
 * @throws VringError `ERR_VRING_PROTOCOL` (reason `bad-inflight-area`) for a record whose
 * file is smaller than the reply says, or that is not laid out for the queues asked for.
 * @internal
 */
export async function exchangeInflight(
  connection: FrontendConnection,
  negotiated: NegotiatedFeatures,
  kept: InflightArea | undefined,
  numQueues: number,
  queueSize: number,
): Promise<InflightArea | undefined> {
  if ((negotiated.protocolFeatures & VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) === 0n) return kept;
  let record = kept;
  if (!record) {
    const reply = await connection.query(R.GET_INFLIGHT_FD, {
      mmapSize: 0n,
      mmapOffset: 0n,
      numQueues,
      queueSize,
      fd: undefined,
    });
    try {
      checkInflightReply(reply, numQueues, queueSize);
    } catch (error) {
      closeFds(reply.fd === undefined ? [] : [reply.fd]);
      throw error;
    }
    record = reply;
  }
  try {
    await connection.command(R.SET_INFLIGHT_FD, record);
  } catch (error) {
    // A record asked for on this connection is nobody else's to close.
    if (!kept) closeFds([record.fd!]);
    throw error;
  }
  return record;
}

/** A record we keep must be what we asked for, and its file must hold all of it. */
function checkInflightReply(reply: InflightArea, numQueues: number, queueSize: number): void {
  if (reply.numQueues !== numQueues || reply.queueSize !== queueSize || reply.mmapSize === 0n) {
    throw protocolError(
      'bad-inflight-area',
      `GET_INFLIGHT_FD: asked for ${numQueues} queues of ${queueSize}, got ` +
        `${reply.numQueues} of ${reply.queueSize} in ${reply.mmapSize} bytes`,
    );
  }
  const needed = BigInt(numQueues * inflightQueueBytes(queueSize));
  if (reply.mmapSize < needed) {
    throw protocolError(
      'bad-inflight-area',
      `GET_INFLIGHT_FD: ${reply.mmapSize} bytes for ${numQueues} queues of ${queueSize}, ` +
        `which take ${needed}`,
    );
  }
  const fileSize = BigInt(fstatSync(reply.fd!).size);
  if (reply.mmapOffset + reply.mmapSize > fileSize) {
    throw protocolError(
      'bad-inflight-area',
      `GET_INFLIGHT_FD: the record ends at ${reply.mmapOffset + reply.mmapSize}, its file ` +
        `has ${fileSize} bytes`,
    );
  }
}

/**
 * Asks a back-end for its queue pairs when more than one is wanted. DPDK's own front-end
 * trusts its `queues=` devarg instead, but a back-end that has fewer pairs would then leave
 * the extra rings dead; asking turns that into an error at open.
 * @throws VringError `ERR_VRING_FEATURE_MISMATCH` (reason `too-few-queue-pairs`) when the
 * back-end lacks PROTOCOL_F_MQ or reports fewer pairs than `wanted`.
 */
async function checkQueuePairs(
  connection: FrontendConnection,
  protocolFeatures: bigint,
  wanted: number,
): Promise<void> {
  if (wanted <= 1) return;
  if ((protocolFeatures & VHOST_USER_PROTOCOL_F_MQ) === 0n) {
    throw new VringError(
      'ERR_VRING_FEATURE_MISMATCH',
      `${wanted} queue pairs wanted, but the back-end does not offer PROTOCOL_F_MQ`,
      { reason: 'too-few-queue-pairs' },
    );
  }
  const available = await connection.query(R.GET_QUEUE_NUM, undefined);
  if (available < BigInt(wanted)) {
    throw new VringError(
      'ERR_VRING_FEATURE_MISMATCH',
      `${wanted} queue pairs wanted, the back-end has ${available}`,
      { reason: 'too-few-queue-pairs' },
    );
  }
}

/**
 * SET_MEM_TABLE (or, with CONFIGURE_MEM_SLOTS, GET_MAX_MEM_SLOTS and ADD_MEM_REG per region),
 * then per vring SET_VRING_NUM/BASE/ADDR/CALL/KICK (the memory table first:
 * DPDK refuses ring addresses it cannot translate yet), SET_VRING_ENABLE 1 when bit 30 was
 * negotiated, and SET_STATUS DRIVER_OK with PROTOCOL_F_STATUS. After this DPDK's
 * `virtio_is_ready()` holds and traffic flows.
 * @internal
 */
export async function configureDevice(
  connection: FrontendConnection,
  negotiated: NegotiatedFeatures,
  device: DeviceSetup,
): Promise<void> {
  const regions = device.regions.map((region) => ({
    guestPhysAddr: region.address,
    memorySize: BigInt(region.size),
    userspaceAddr: region.address,
    mmapOffset: 0n,
    fd: region.fd,
  }));
  if ((negotiated.protocolFeatures & VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) !== 0n) {
    // A back-end with memory slots takes regions one at a time, as QEMU hands them over.
    const slots = await connection.query(R.GET_MAX_MEM_SLOTS, undefined);
    if (slots < BigInt(regions.length)) {
      throw protocolError(
        'no-free-slot',
        `the back-end has ${slots} memory slots for ${regions.length} regions`,
      );
    }
    for (const memory of regions) await connection.command(R.ADD_MEM_REG, memory);
  } else {
    await connection.command(R.SET_MEM_TABLE, { regions });
  }
  for (const ring of device.vrings) {
    await connection.command(R.SET_VRING_NUM, { index: ring.index, num: ring.size });
    await connection.command(R.SET_VRING_BASE, { index: ring.index, num: ring.base });
    await connection.command(R.SET_VRING_ADDR, {
      index: ring.index,
      flags: 0,
      descUser: ring.desc,
      usedUser: ring.used,
      availUser: ring.avail,
      log: 0n,
    });
    await connection.command(R.SET_VRING_CALL, { index: ring.index, fd: ring.callFd });
    await connection.command(R.SET_VRING_KICK, { index: ring.index, fd: ring.kickFd });
  }
  if ((negotiated.features & VHOST_USER_F_PROTOCOL_FEATURES) !== 0n) {
    for (const ring of device.vrings) {
      await connection.command(R.SET_VRING_ENABLE, { index: ring.index, num: 1 });
    }
  }
  if ((negotiated.protocolFeatures & VHOST_USER_PROTOCOL_F_STATUS) !== 0n) {
    await connection.command(R.SET_STATUS, STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
  }
}
