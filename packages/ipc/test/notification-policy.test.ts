// How long a link polls an empty ring before it sleeps: while polls catch what the link waits
// for, and not once they do not; never on a single core. The budget's rules are specified
// directly; two real processes show the effect on CPU and on wakeups.
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import type { FramePort } from '@vring/core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Child, scriptCommand, socketPath, spawnChild } from '../../../test-support/index.js';
import { PollBudget } from '../src/link/poll-budget.js';
import type { PollDecisions } from './fixtures/poll-decisions.js';

/** The parts of a port a budget reads. */
function port(notification: FramePort['notification'], spinMicros = 50): FramePort {
  return { notification, polling: { spinMicros } } as unknown as FramePort;
}

const oneCore = cpus().length < 2;

test('a new adaptive link polls for the port’s spin budget; event mode for 5 µs; poll mode for ever', () => {
  if (oneCore) {
    assert.is(new PollBudget(port('adaptive')).next(), 0, 'one core: never polls');
    return;
  }
  assert.is(new PollBudget(port('adaptive', 80)).next(), 0.08);
  assert.is(new PollBudget(port('event')).next(), 0.005);
  assert.is(new PollBudget(port('poll')).next(), Infinity);
  assert.is(new PollBudget(port('adaptive', 0)).next(), 0, 'a zero budget never polls');
});

test('waits that outlast the poll stop polling, save one probe in sixteen', () => {
  const budget = new PollBudget(port('adaptive'));
  if (budget.maxMs === 0) return; // one core: covered above
  budget.ended(1, false); // a reply 1 ms late: the 50 µs poll ran out
  assert.ok(budget.pays, 'one late reply is not a pattern');
  for (let i = 0; i < 3; i++) budget.ended(1, false);
  assert.not.ok(budget.pays, 'four in a row are');
  const polls = Array.from({ length: 32 }, () => budget.next());
  assert.equal(
    polls.map((ms) => ms > 0),
    Array.from({ length: 32 }, (_, i) => i % 16 === 15),
    'only every sixteenth wait polls',
  );
});

test('waits that end soon after a sleep (the wakeup aside) bring polling back', () => {
  const budget = new PollBudget(port('adaptive'));
  if (budget.maxMs === 0) return;
  for (let i = 0; i < 8; i++) budget.ended(1, false);
  assert.not.ok(budget.pays);
  // Woken 35 µs after the wait began: the frame came ~10 µs in, a poll would have caught it.
  for (let i = 0; i < 24; i++) budget.ended(0.035, true);
  assert.ok(budget.pays);
  assert.ok(budget.next() > 0);
});

test('slow wakeups are learnt: waits that only ever last the wakeups bring polling back', () => {
  const slowWakes = new PollBudget(port('adaptive'));
  const latePeer = new PollBudget(port('adaptive'));
  if (slowWakes.maxMs === 0) return;
  for (let i = 0; i < 8; i++) {
    slowWakes.ended(1, false);
    latePeer.ended(1, false);
  }
  // The link first takes a wakeup to cost 25 µs, and learns better over some dozens of waits.
  for (let i = 0; i < 96; i++) {
    // Two wakeups of ~60 µs each, the same every time: the peer itself answers at once.
    slowWakes.ended(0.12 + (i % 4) * 0.002, true);
    // An answer 5 ms late is the peer's lateness, never a wakeup.
    latePeer.ended(5 + (i % 4) * 0.01, true);
  }
  assert.ok(slowWakes.pays, 'polls again');
  assert.not.ok(latePeer.pays, 'still sleeps');
});

test('a poll that finds another thread waiting for its core stops polling until probes catch again', () => {
  const budget = new PollBudget(port('adaptive'));
  if (budget.maxMs === 0) return;
  for (let i = 0; i < 8; i++) budget.ended(0.004, false);
  assert.ok(budget.pays, 'replies within microseconds: polling pays');
  budget.contended();
  assert.not.ok(budget.pays, 'the core was wanted by somebody else');
  const polls = Array.from({ length: 16 }, () => budget.next());
  assert.is(polls.filter((ms) => ms > 0).length, 1, 'one probe in sixteen');
  // Probes that catch their frame at once, with the core to spare, bring polling back.
  for (let i = 0; i < 6; i++) budget.ended(0.004, false);
  assert.ok(budget.pays);
});

test('a poll lasts a few times the usual wait, not the whole budget', () => {
  const budget = new PollBudget(port('adaptive', 1000));
  if (budget.maxMs === 0) return;
  for (let i = 0; i < 64; i++) budget.ended(0.004, false);
  const poll = budget.next();
  assert.ok(poll >= 0.01 && poll <= 0.03, `polls ${poll} ms after waits of 4 µs`);
  // One late reply does not stop a link whose waits are usually short.
  budget.ended(2, false);
  assert.ok(budget.pays);
});

test('event mode stops its short polls when waits last a wakeup, and keeps them for a stream', () => {
  const rpc = new PollBudget(port('event'));
  const stream = new PollBudget(port('event'));
  if (rpc.maxMs === 0) return;
  // A 5 µs poll costs little against a wakeup: it stops once more than ~5 in 6 waits outlast it.
  for (let i = 0; i < 16; i++) {
    rpc.ended(0.06, true); // each answer needs the peer woken first
    stream.ended(0.001, false); // the next frame is there within a microsecond
  }
  assert.not.ok(rpc.pays);
  assert.ok(stream.pays);
});

/** Starts a fixture (in ./fixtures), pinned to `cpus` when given. */
function start(name: string, args: string[], cpus?: string): Child {
  const command = scriptCommand(new URL(`./fixtures/${name}`, import.meta.url), args);
  const [file, ...rest] = cpus ? ['taskset', '-c', cpus, ...command] : command;
  return spawnChild(file!, rest, { name, killAfterMs: 60_000 });
}

interface Exchange {
  notification: 'event' | 'adaptive';
  delayMs: number;
  count: number;
  spinMicros: number;
  cpus?: string;
}

/** A requester and an echo process exchanging `count` values one at a time. */
async function exchange(options: Exchange) {
  const path = socketPath('policy');
  const { notification, delayMs, count, spinMicros, cpus } = options;
  const mode = [notification, String(spinMicros)];
  const echo = start('channel-paced-echo.ts', [path, String(delayMs), ...mode], cpus);
  try {
    assert.is(await echo.line(), 'ready');
    const requester = start('channel-requester.ts', [path, String(count), ...mode], cpus);
    const answers = JSON.parse(await echo.line()) as { wakeups: number } & PollDecisions;
    const asked = JSON.parse(await requester.line()) as {
      answered: number;
      ms: number;
      cpuMs: number;
      wakeups: number;
    } & PollDecisions;
    assert.is(await requester.exited, 0);
    assert.is(await echo.exited, 0);
    assert.is(asked.answered, count, 'every answer arrived, intact');
    return { asked, answers };
  } finally {
    echo.kill();
  }
}

test('an adaptive requester whose answers come 5 ms late stops polling for them (real processes)', async () => {
  // With a 2 ms spin budget, polling through every wait would cost 100 × 2 ms of CPU.
  const { asked } = await exchange({
    notification: 'adaptive',
    delayMs: 5,
    count: 100,
    spinMicros: 2000,
  });
  assert.ok(asked.cpuMs < 100, `the requester spent ${asked.cpuMs} ms of CPU on 100 requests`);
});

const noTaskset =
  spawnSync('taskset', ['--version']).status === 0
    ? undefined
    : 'taskset (util-linux) is not installed';

test('two adaptive processes sharing one core stop polling and go on by wakeups (real processes)', async () => {
  if (noTaskset) {
    console.log(`  skipped: ${noTaskset}`);
    return;
  }
  // A poller holding the core would keep its peer from answering until the kernel preempts
  // it. Pinned to one core, each side's polls find the core wanted (the peer runs in their
  // yields): the budget stops polling, and each side sleeps until the other wakes it. Every
  // exchange completes (the fixtures are killed after a minute).
  const count = 500;
  const { asked, answers } = await exchange({
    notification: 'adaptive',
    delayMs: 0,
    count,
    spinMicros: 2000,
    cpus: '0',
  });
  for (const [side, { waits, polled }] of Object.entries({ requester: asked, echo: answers })) {
    assert.ok(waits >= count / 2, `the ${side} waited ${waits} times for ${count} exchanges`);
    // Stopped, a budget still polls one wait in 16 to notice a change: a quarter is generous.
    assert.ok(polled < waits / 4, `the ${side} polled ${polled} of its ${waits} waits`);
  }
});

test.run();
