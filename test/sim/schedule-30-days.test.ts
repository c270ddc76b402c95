// Thirty simulated days of a `0 */6 * * *` schedule (retention 5, concurrencyPolicy Forbid) driven through the
// Metacontroller simulator against real hook servers, with backups that randomly succeed or fail. The simulated
// clock only moves to the next event Metacontroller would act on: the resync the hook asked for (resyncAfterSeconds)
// or a backup finishing (a child change); there is no periodic safety-net resync, so on-time backups prove that
// resyncAfterSeconds works. Checked after every applied answer: one backup per slot, never a reused name, exact
// retention, failed and running backups never deleted, and a consistent status. Then the same run with two server
// instances answering alternately must give the same history as one server.
//
// The random run is seeded; reproduce a failure with SIM_SEED=<seed from the message>.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import { BACKUP_CHILDREN_KEY, CONTROLLER_UID_LABEL, SCHEDULE_LABEL, SCHEDULED_TIME_ANNOTATION } from '../../src/api/constants.js';
import type { ScheduleSpec } from '../../src/api/types.js';
import type { Condition, KubernetesObject } from '../../src/metacontroller/types.js';
import { at, backupTemplateSpec, iso } from '../helpers/builders.js';
import { CompositeSimulator, type BackupResult, type SyncRecord } from '../helpers/metacontroller-sim.js';
import { startServer, type RunningServer } from '../helpers/server.js';

const SEED = Number(process.env.SIM_SEED ?? 20260101);
const SCHEDULE = 'etcd-every-6h';
const NAMESPACE = 'talos-backup';
const UID = '9d3b1c52-6f0e-4e8a-b1a4-3c7d2e5f8a90';
const CREATED = at('2026-01-01T00:17:00Z');
const DAY_MS = 24 * 3600 * 1000;
const SLOT_MS = 6 * 3600 * 1000; // `0 */6 * * *` in UTC: every slot is a multiple of 6 h since the epoch
const END = new Date(CREATED.getTime() + 30 * DAY_MS);
const RETENTION = 5;
const SUCCESS_RATE = 0.8;
const DUPLICATE_SYNC_RATE = 0.3;
const RESYNC_PAD_MS = 100; // the hook's pad on resyncAfterSeconds
const MAX_LATENESS_MS = 1000;

/** mulberry32: a tiny deterministic PRNG, so a failing run can be replayed from its seed. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const byName = (a: KubernetesObject, b: KubernetesObject): number => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0);
const nameOf = (slot: Date): string => `${SCHEDULE}-${slot.getTime() / 1000}`;
const nextSlotAfter = (time: Date): Date => new Date((Math.floor(time.getTime() / SLOT_MS) + 1) * SLOT_MS);

/** Every slot strictly after the schedule's creation, up to the end of the run. */
function expectedSlots(): Date[] {
  const slots: Date[] = [];
  for (let slot = nextSlotAfter(CREATED); slot <= END; slot = new Date(slot.getTime() + SLOT_MS)) slots.push(slot);
  return slots;
}

/** A condition of a status (a backup's or the schedule's). */
function conditionIn(status: unknown, type: string): Condition | undefined {
  return (status as { conditions?: Condition[] } | undefined)?.conditions?.find((c) => c.type === type);
}

/** What the test itself knows about a backup it saw created: when it runs until and how it ends. */
interface BackupFact {
  name: string;
  slot: Date;
  createdAt: Date;
  finishAt: Date;
  result: BackupResult;
  finished: boolean;
}

interface ScenarioResult {
  created: string[];
  deleted: string[];
  finalChildren: KubernetesObject[];
  finalParent: KubernetesObject;
  history: SyncRecord[];
  /** Resyncs that fired before the slot they were meant for (the hook must answer "nothing yet" and requeue). */
  earlyWakeups: number;
  /** Syncs that saw nothing new (same children, no slot passed) and so had to change nothing. */
  quietSyncs: number;
  /** Backups that finished, by result. */
  successes: number;
  failures: number;
}

// Both servers read the clock of the simulator that is running now.
let running: CompositeSimulator | undefined;
const simulatedClock = (): Date => {
  if (!running) throw new Error('no simulation is running');
  return new Date(running.now);
};

/**
 * Runs the 30 days against the given hook servers (round-robin per call) and checks every invariant after each
 * applied answer. The random choices depend only on the seed, never on which server answered.
 */
async function runScenario(hookUrls: readonly string[], label: string): Promise<ScenarioResult> {
  const random = mulberry32(SEED);
  const sim = new CompositeSimulator({
    hookUrls,
    name: SCHEDULE,
    namespace: NAMESPACE,
    uid: UID,
    spec: { schedule: '0 */6 * * *', retention: RETENTION, backupTemplate: { spec: backupTemplateSpec() } },
    createdAt: CREATED,
  });
  running = sim;
  const facts = new Map<string, BackupFact>(); // every backup ever created, in creation order
  const created: string[] = [];
  const deleted: string[] = [];
  let earlyWakeups = 0;
  let quietSyncs = 0;
  let previous: { at: Date; children: KubernetesObject[]; created: boolean } | undefined; // what the previous sync left behind

  const check = (record: SyncRecord): void => {
    const where = (what: string): string => `${what} [seed ${SEED}, ${label}, sync #${record.seq} (${record.reason}) at ${record.at.toISOString()} via ${record.url}]`;

    for (const name of record.created) {
      assert.ok(!facts.has(name), where(`${name} was created a second time`));
      const match = new RegExp(`^${SCHEDULE}-(\\d+)$`).exec(name);
      assert.ok(match, where(`${name} is not <schedule>-<unix seconds>`));
      const seconds = Number(match[1]);
      assert.equal(seconds % (SLOT_MS / 1000), 0, where(`${name} is not named after a slot of 0 */6 * * *`));
      const slot = new Date(seconds * 1000);
      const child = sim.child(name)!;
      assert.equal(child.metadata.annotations?.[SCHEDULED_TIME_ANNOTATION], iso(slot), where(`${name} has the wrong scheduled-time annotation`));
      assert.equal(child.metadata.labels?.[SCHEDULE_LABEL], SCHEDULE, where(`${name} lacks the schedule label`));
      assert.equal(child.metadata.labels?.[CONTROLLER_UID_LABEL], UID, where(`${name} lacks the controller-uid label`));
      assert.ok(slot > CREATED, where(`${name} is for a slot before the schedule existed`));
      const lateness = record.at.getTime() - slot.getTime();
      assert.ok(lateness >= 0, where(`${name} was created ${-lateness} ms before its slot`));
      // On time, or (Forbid) as soon as the backups running at slot time have all finished. With 1–40 min runs
      // and 6 h between slots nothing ever blocks a slot; the rule stays exact if runtimes are made longer.
      const blockers = [...facts.values()].filter((f) => f.createdAt <= slot && f.finishAt > slot);
      const allowedFrom = Math.max(slot.getTime(), ...blockers.map((f) => f.finishAt.getTime()));
      assert.ok(record.at.getTime() - allowedFrom <= MAX_LATENESS_MS, where(`${name} was created ${lateness} ms after its slot`));

      // Each backup runs 1 to 40 minutes and succeeds 4 times out of 5.
      const finishAt = new Date(record.at.getTime() + (60 + Math.floor(random() * 2341)) * 1000);
      const result: BackupResult = random() < SUCCESS_RATE ? 'succeeded' : 'failed';
      facts.set(name, { name, slot, createdAt: record.at, finishAt, result, finished: false });
      created.push(name);
    }

    for (const gone of record.deleted) {
      // Only retention deletes, and it only deletes successful backups: never a failed or a running one.
      assert.equal(conditionIn(gone.status, 'Ready')?.status, 'True', where(`${gone.metadata.name} was deleted but is not Ready=True: ${JSON.stringify(gone.status)}`));
      deleted.push(gone.metadata.name);
    }

    assert.deepEqual(record.drifted, [], where('re-emitted children differ from the stored ones'));

    // Retention exact: the newest 5 successes by slot are kept, every failure is kept, every running one is kept.
    const all = [...facts.values()];
    const successes = all.filter((f) => f.finished && f.result === 'succeeded').sort((a, b) => b.slot.getTime() - a.slot.getTime());
    const children = sim.childObjects();
    const namesWhere = (pick: (c: KubernetesObject) => boolean): string[] => children.filter(pick).map((c) => c.metadata.name).sort();
    assert.deepEqual(
      namesWhere((c) => conditionIn(c.status, 'Ready')?.status === 'True'),
      successes.slice(0, RETENTION).map((f) => f.name).sort(),
      where(`the Ready backups are not the newest min(${RETENTION}, ${successes.length}) successes`),
    );
    assert.deepEqual(namesWhere((c) => conditionIn(c.status, 'Failed')?.status === 'True'), all.filter((f) => f.finished && f.result === 'failed').map((f) => f.name).sort(), where('a failed backup is missing'));
    const active = all.filter((f) => !f.finished).map((f) => f.name).sort();
    assert.deepEqual(namesWhere((c) => c.status === undefined), active, where('a running backup is missing'));
    assert.ok(active.length <= 1, where(`two backups run at once under Forbid: ${active.join(', ')}`));
    assert.equal(children.length, Math.min(RETENTION, successes.length) + all.filter((f) => f.finished && f.result === 'failed').length + active.length, where('unexpected children'));

    // The status describes what the run did so far, and the hook asked to be called back just after the next slot.
    const status = sim.parentObject.status as Record<string, unknown>;
    // A slot is recorded once its backup is observed: the answer that creates it does not record it yet.
    const lastSlot = all.filter((f) => !record.created.includes(f.name)).at(-1)?.slot;
    assert.equal(status.lastScheduleTime, lastSlot && iso(lastSlot), where('wrong lastScheduleTime'));
    assert.deepEqual(status.activeBackups, active, where('wrong activeBackups'));
    assert.equal(status.nextScheduleTime, iso(nextSlotAfter(record.at)), where('wrong nextScheduleTime'));
    assert.equal(status.observedGeneration, 1, where('observedGeneration was not injected'));
    const ready = conditionIn(status, 'Ready');
    assert.equal(ready?.status, 'True', where(`Ready is not True: ${JSON.stringify(ready)}`));
    assert.equal(ready?.reason, 'Scheduled', where('Ready is not Scheduled'));
    assert.equal(sim.nextResyncAt?.getTime(), nextSlotAfter(record.at).getTime() + RESYNC_PAD_MS, where(`resync pending at ${sim.nextResyncAt?.toISOString()}, not just after the next slot`));

    // A sync that sees the same children as the previous one left, with no slot passed in between, must change
    // nothing: Metacontroller syncs again after each of its own writes, so anything else would loop forever.
    // (The sync right after a creation records the new slot once it observes the backup: one write, not a loop.)
    const observed = Object.values(record.request.children[BACKUP_CHILDREN_KEY] ?? {}).sort(byName);
    if (previous && !previous.created && isDeepStrictEqual(observed, previous.children) && Math.floor(record.at.getTime() / SLOT_MS) === Math.floor(previous.at.getTime() / SLOT_MS)) {
      quietSyncs += 1;
      assert.deepEqual({ created: record.created, deleted: record.deleted.length, statusWritten: record.statusWritten }, { created: [], deleted: 0, statusWritten: false }, where('a sync with nothing new was not a no-op'));
    }
    previous = { at: record.at, children, created: record.created.length > 0 };
  };

  check(await sim.sync('parent-created'));
  for (;;) {
    // Metacontroller's requeue and the hook's clock are not the same clock: a resync fires between 150 ms
    // early and 250 ms late, so it sometimes arrives before the slot (the hook must then just requeue).
    const skewMs = Math.floor(random() * 400) - 150;
    const resyncAt = sim.nextResyncAt && new Date(Math.max(sim.now.getTime(), sim.nextResyncAt.getTime() + skewMs));
    const finishing = [...facts.values()].filter((f) => !f.finished).sort((a, b) => a.finishAt.getTime() - b.finishAt.getTime())[0];
    const next = finishing && (!resyncAt || finishing.finishAt <= resyncAt) ? { time: finishing.finishAt, finishing } : resyncAt && { time: resyncAt, finishing: undefined };
    if (!next || next.time > END) break;

    sim.advanceTo(next.time);
    if (next.finishing) {
      next.finishing.finished = true;
      check(await sim.setBackupOutcome(next.finishing.name, next.finishing.result));
    } else {
      if (sim.now.getTime() < sim.nextResyncAt!.getTime() - RESYNC_PAD_MS) earlyWakeups += 1; // before the slot it waits for
      check(await sim.resync());
    }
    // Metacontroller also syncs again after its own writes and on informer events: same clock, same objects.
    if (random() < DUPLICATE_SYNC_RATE) check(await sim.sync('duplicate'));
  }

  const finished = [...facts.values()].filter((f) => f.finished);
  return {
    created,
    deleted,
    finalChildren: sim.childObjects(),
    finalParent: sim.parentObject,
    history: sim.history,
    earlyWakeups,
    quietSyncs,
    successes: finished.filter((f) => f.result === 'succeeded').length,
    failures: finished.filter((f) => f.result === 'failed').length,
  };
}

describe('30 simulated days of `0 */6 * * *` through a Metacontroller simulator', () => {
  let one: RunningServer;
  let two: RunningServer;
  let singleRun: ScenarioResult | undefined;
  before(async () => {
    one = await startServer({ clock: simulatedClock });
    two = await startServer({ clock: simulatedClock });
  });
  after(async () => {
    await one.close();
    await two.close();
  });

  const single = async (): Promise<ScenarioResult> => (singleRun ??= await runScenario([one.url], 'one server'));

  it('creates exactly one backup per slot, on time, never reuses a name, and keeps retention exact at every step', async (t) => {
    const slots = expectedSlots();
    // Created 2026-01-01T00:17Z, run until 2026-01-31T00:17Z: 06, 12 and 18h on Jan 1, 4 a day on Jan 2–30,
    // and 00h on Jan 31.
    assert.equal(slots.length, 3 + 29 * 4 + 1);
    assert.equal(slots.length, 120);

    const run = await single();
    const count = (reason: SyncRecord['reason']): number => run.history.filter((r) => r.reason === reason).length;
    t.diagnostic(
      `seed ${SEED}: ${run.history.length} syncs (${count('resync')} resyncs, ${run.earlyWakeups} of them early; ${count('child-changed')} child changes; ` +
        `${count('duplicate')} duplicates; ${run.quietSyncs} with nothing new), ${run.created.length} created, ${run.successes} succeeded, ${run.failures} failed, ${run.deleted.length} deleted`,
    );
    assert.deepEqual(run.created, slots.map(nameOf), `seed ${SEED}: not one backup per slot, in order`);
    assert.equal(new Set(run.created).size, run.created.length);

    // The random outcomes really were mixed, and retention deleted exactly the successes beyond the newest 5.
    assert.ok(run.successes > RETENTION && run.failures > 0, `seed ${SEED}: ${run.successes} successes, ${run.failures} failures`);
    assert.equal(run.deleted.length, run.successes - RETENTION, `seed ${SEED}: deletions`);
    // Some resyncs fired before their slot; the hook created nothing early (checked at each step) and requeued.
    assert.ok(run.earlyWakeups > 0, `seed ${SEED}: no early resync was simulated`);
    assert.ok(run.quietSyncs > 0, `seed ${SEED}: no sync with nothing new was simulated`);
    assert.equal((run.finalParent.spec as ScheduleSpec).concurrencyPolicy, 'Forbid', 'the CRD default applies');
    const final = run.finalParent.status as Record<string, unknown>;
    const lastSync = run.history.at(-1)!;
    // The run ends with the sync that creates the 2026-01-31T00:00 backup; that slot is recorded once the backup
    // is observed, by the next sync.
    const recorded = lastSync.created.length > 0 ? slots.at(-2)! : slots.at(-1)!;
    assert.equal(final.lastScheduleTime, iso(recorded), `seed ${SEED}: final lastScheduleTime`);
    assert.equal(slots.at(-1)!.toISOString(), '2026-01-31T00:00:00.000Z');
    assert.equal(final.nextScheduleTime, iso(nextSlotAfter(lastSync.at)), `seed ${SEED}: final nextScheduleTime`);
    assert.equal(final.nextScheduleTime, '2026-01-31T06:00:00Z');
    assert.deepEqual({ status: conditionIn(final, 'Ready')?.status, reason: conditionIn(final, 'Ready')?.reason }, { status: 'True', reason: 'Scheduled' });
  });

  it('two server instances answering alternately produce exactly the history of one', async () => {
    const reference = await single();
    const alternating = await runScenario([one.url, two.url], 'two servers');

    const urls = alternating.history.map((r) => r.url);
    assert.ok(urls.every((url, i) => url === (i % 2 === 0 ? one.url : two.url)), 'the servers did not alternate');
    assert.deepEqual(alternating.created, reference.created, `seed ${SEED}: created names differ`);
    assert.deepEqual(alternating.deleted, reference.deleted, `seed ${SEED}: deleted names differ`);
    assert.deepEqual(alternating.finalChildren, reference.finalChildren, `seed ${SEED}: final children differ`);
    assert.deepEqual(alternating.finalParent.status, reference.finalParent.status, `seed ${SEED}: final status differs`);
    // Stronger than the outcome: every single answer is the same, whichever server gave it.
    assert.deepEqual(
      alternating.history.map((r) => r.answer),
      reference.history.map((r) => r.answer),
      `seed ${SEED}: answers differ`,
    );
  });
});
