// Thirty simulated days of a `0 */6 * * *` schedule (retention 5, failedBackupsHistoryLimit unset so the CRD's
// default 3, concurrencyPolicy Forbid) driven through the
// Metacontroller stand-in (test/doubles/metacontroller.ts, CompositeController only) on a real API server
// (test/harness/control-plane.ts) against real hook servers, with backups that randomly succeed or fail. The test
// plays the backup decorator: it writes each backup's outcome through the status subresource, as the decorator
// would. The simulated clock only moves to the next event Metacontroller would act on: the resync the hook asked
// for (resyncAfterSeconds) or a backup finishing (a child change); the manifest's periodic safety-net resync is
// taken out, so on-time backups prove that resyncAfterSeconds works. Resyncs fire up to 150 ms early (the stand-in
// fires them before they are due) or 250 ms late; some steps add a duplicate sync (an informer event), which must
// change nothing.
//
// What a real API server changes against the former in-memory simulator: the schedule's creationTimestamp is real
// time, so the simulated clock starts at it; uids, resourceVersions and creationTimestamps differ between runs
// (answers are compared normalised); each write triggers another sync, so several syncs happen per step: the
// invariants are checked for every recorded hook call (what it created and deleted, and its answer against its own
// request) and for the objects stored in the API server after each step has settled. Then the same run with two
// hook servers answering alternately must give the same history as one server.
//
// The random run is seeded; reproduce a failure with SIM_SEED=<seed from the message>. The stand-in's client is
// not rate-limited here (the 5 QPS limit is tested in test/doubles/metacontroller.test.ts); 30 days would take long.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import {
  API_VERSION,
  BACKUP_CHILDREN_KEY,
  BACKUP_KIND,
  CONTROLLER_UID_LABEL,
  SCHEDULE_KIND,
  SCHEDULE_LABEL,
  SCHEDULED_TIME_ANNOTATION,
} from '../../src/api/constants.js';
import { isReadableBackup } from '../../src/api/validation.js';
import { DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT } from '../../src/server/schedule/retention.js';
import type { KubernetesObject } from '../../src/server/metacontroller/types.js';
import type { Condition } from '../../src/api/conditions.js';
import { useControlPlane, type ControlPlane } from '../harness/control-plane.js';
import {
  KubeRest,
  loadManifests,
  startMetacontroller,
  type HookCall,
  type MetacontrollerStandIn,
} from '../doubles/metacontroller.js';
import { backupTemplateSpec, iso } from '../helpers/builders.js';
import { startServer, type RunningServer } from '../helpers/server.js';

const SEED = Number(process.env.SIM_SEED ?? 20260101);
const SCHEDULE = 'etcd-every-6h';
const COMPOSITE = 'talos-etcd-backup-schedule';
const DAY_MS = 24 * 3600 * 1000;
const SLOT_MS = 6 * 3600 * 1000; // `0 */6 * * *` in UTC: every slot is a multiple of 6 h since the epoch
const RETENTION = 5;
/** The schedule leaves failedBackupsHistoryLimit unset: the CRD's default applies. */
const FAILED_KEPT = DEFAULT_FAILED_BACKUPS_HISTORY_LIMIT;
const SUCCESS_RATE = 0.8;
const DUPLICATE_SYNC_RATE = 0.3;
const RESYNC_PAD_MS = 100; // the hook's pad on resyncAfterSeconds
const MAX_LATENESS_MS = 1000;

type BackupResult = 'succeeded' | 'failed';

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

const nameOf = (slot: Date): string => `${SCHEDULE}-${slot.getTime() / 1000}`;
const nextSlotAfter = (time: Date): Date => new Date((Math.floor(time.getTime() / SLOT_MS) + 1) * SLOT_MS);

function conditionIn(status: unknown, type: string): Condition | undefined {
  return (status as { conditions?: Condition[] } | undefined)?.conditions?.find((c) => c.type === type);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Paths at which `desired` sets a value that `live` does not have (what an apply would change), e.g. `spec.a.b`. */
function differences(desired: unknown, live: unknown, path: string): string[] {
  if (isObject(desired) && isObject(live))
    return Object.entries(desired).flatMap(([key, value]) =>
      differences(value, live[key], path ? `${path}.${key}` : key),
    );
  return isDeepStrictEqual(desired, live) ? [] : [path];
}

/** A realistic final status, as the backup decorator writes it when the snapshot Job finished. */
function outcomeStatus(child: KubernetesObject, result: BackupResult, finished: string): Record<string, unknown> {
  const condition = (type: string, status: 'True' | 'False', reason: string, message: string): Condition => ({
    type,
    status,
    reason,
    message,
    lastTransitionTime: finished,
    observedGeneration: 1,
  });
  const bucket =
    (child.spec as { backupStorage?: { s3?: { bucket?: string } } }).backupStorage?.s3?.bucket ?? 'unknown';
  return result === 'succeeded'
    ? {
        conditions: [
          condition('Progressing', 'False', 'BackupCompleted', 'the snapshot Job finished'),
          condition('Ready', 'True', 'BackupSucceeded', `uploaded to s3://${bucket}`),
          condition('Failed', 'False', 'BackupSucceeded', ''),
        ],
        phase: 'Succeeded',
        startTime: child.metadata.creationTimestamp,
        completionTime: finished,
        snapshot: {
          bucket,
          key: `talosconfig/etcd-snapshot-${finished.replace(/:/g, '')}.db.zst`,
          size: 52_428_800,
          compression: 'zstd',
          encrypted: false,
          verified: false,
        },
      }
    : {
        conditions: [
          condition('Progressing', 'False', 'BackupCompleted', 'the snapshot Job finished'),
          condition('Ready', 'False', 'BackupFailed', 'no snapshot was stored'),
          condition('Failed', 'True', 'BackupFailed', 'Failed to upload snapshot to S3: SlowDown'),
        ],
        phase: 'Failed',
        startTime: child.metadata.creationTimestamp,
        completionTime: finished,
        message: 'Failed to upload snapshot to S3: SlowDown',
      };
}

/** What the test knows about a backup it saw created: when it runs until and how it ends. */
interface BackupFact {
  name: string;
  slot: Date;
  createdAt: Date;
  finishAt: Date;
  result: BackupResult;
  finished: boolean;
}

type StepKind = 'start' | 'resync' | 'early-resync' | 'finish' | 'duplicate';

/** One step of the run: an event, then settle(). */
interface Step {
  kind: StepKind;
  at: Date;
  calls: HookCall[];
  created: string[];
  deleted: string[];
  /** The last answer of the step (it saw the settled state), normalised (namespace, schedule uid). */
  finalAnswer: string;
}

interface ScenarioResult {
  created: string[];
  deleted: string[];
  steps: Step[];
  calls: HookCall[];
  finalChildren: string;
  finalStatus: unknown;
  finalSpec: Record<string, unknown>;
  earlyWakeups: number;
  quietSyncs: number;
  successes: number;
  failures: number;
  slots: Date[];
}

describe('30 simulated days of `0 */6 * * *` through the Metacontroller stand-in on a real API server', () => {
  const controlPlane = useControlPlane();
  let cp: ControlPlane;
  let admin: KubeRest;
  let one: RunningServer;
  let two: RunningServer;
  // The hook servers and the stand-in read this clock; each run sets it.
  let simulated = new Date(0);
  const clock = (): Date => new Date(simulated);
  /** Both runs' schedules exist before either starts, so both start their clock at the same time (the later creation). */
  const runs = new Map<string, { ns: string; uid: string }>();
  let start: Date;
  let singleRun: ScenarioResult | undefined;

  const schedulePath = (ns: string, name = '') =>
    `/apis/${API_VERSION}/namespaces/${ns}/talosetcdbackupschedules${name && `/${name}`}`;
  const backupsPath = (ns: string, name = '') =>
    `/apis/${API_VERSION}/namespaces/${ns}/talosetcdbackups${name && `/${name}`}`;

  before(async () => {
    cp = controlPlane();
    await cp.installCrds();
    admin = new KubeRest(await cp.kubeConfig());
    one = await startServer({ clock });
    two = await startServer({ clock });
    let latest = 0;
    for (const label of ['one server', 'two servers']) {
      const ns = `sim-30-days-run-${runs.size + 1}`;
      await admin.request('POST', '/api/v1/namespaces', { body: { metadata: { name: ns } } });
      const created = await admin.request<KubernetesObject>('POST', schedulePath(ns), {
        body: {
          apiVersion: API_VERSION,
          kind: SCHEDULE_KIND,
          metadata: { name: SCHEDULE, namespace: ns, labels: { 'app.kubernetes.io/part-of': 'talos-etcd-backup' } },
          spec: { schedule: '0 */6 * * *', retention: RETENTION, backupTemplate: { spec: backupTemplateSpec() } },
        },
      });
      runs.set(label, { ns, uid: created.metadata.uid! });
      latest = Math.max(latest, Date.parse(created.metadata.creationTimestamp!));
    }
    // The schedules' creationTimestamps are real time: the simulated clock starts at the later one.
    start = new Date(latest);
  });
  after(async () => {
    await one?.close();
    await two?.close();
    admin?.close();
  });

  /** Every slot strictly after the schedule's creation (the clock's start), up to the end of the run. */
  const expectedSlots = (): Date[] => {
    const slots: Date[] = [];
    for (
      let slot = nextSlotAfter(start);
      slot.getTime() <= start.getTime() + 30 * DAY_MS;
      slot = new Date(slot.getTime() + SLOT_MS)
    )
      slots.push(slot);
    return slots;
  };

  /**
   * Runs the 30 days against the given hook servers (round-robin per call) and checks every invariant after each
   * step. The random choices depend only on the seed, never on which server answered.
   */
  async function runScenario(hookUrls: readonly string[], label: string): Promise<ScenarioResult> {
    const { ns, uid } = runs.get(label)!;
    const random = mulberry32(SEED);
    const end = new Date(start.getTime() + 30 * DAY_MS);
    simulated = new Date(start);
    // The schedule controller of metacontroller/schedule-controller.yaml, without its 5-minute safety-net resync.
    const manifests = loadManifests()
      .filter((m) => (m.metadata as { name: string }).name === COMPOSITE)
      .map((m) => {
        const { resyncPeriodSeconds: _dropped, ...spec } = m.spec as Record<string, unknown>;
        return { ...m, spec };
      });
    const mc: MetacontrollerStandIn = await startMetacontroller({
      kubeConfig: await cp.kubeConfig(),
      hookUrls,
      clock,
      manifests,
      namespaces: [ns],
      qps: Infinity,
      burst: Infinity,
    });
    const target = { controller: COMPOSITE, namespace: ns, name: SCHEDULE };
    const normalise = (value: unknown): string =>
      JSON.stringify(value).replaceAll(uid, '<schedule-uid>').replaceAll(ns, '<namespace>');
    const facts = new Map<string, BackupFact>(); // every backup ever created, in creation order
    const created: string[] = [];
    const deleted: string[] = [];
    const steps: Step[] = [];
    let earlyWakeups = 0;
    let quietSyncs = 0;
    let checkedCalls = 0;

    try {
      /** Invariants of one hook call: what applying it did, and its answer against its own request. */
      const checkCall = (call: HookCall, where: (what: string) => string): void => {
        assert.equal(call.hook, 'sync', where('only the sync hook is declared'));
        assert.equal(call.error, undefined, where(`the hook call failed: ${call.error}`));
        const applied = call.applied!;
        assert.equal(applied.error, undefined, where(`applying the answer failed: ${applied.error}`));
        const request = call.request as {
          parent: KubernetesObject;
          children: Record<string, Record<string, KubernetesObject>>;
        };
        const answer = call.response as {
          status: Record<string, unknown>;
          children: KubernetesObject[];
          resyncAfterSeconds?: number;
        };

        for (const child of applied.created) {
          const name = child.metadata.name;
          assert.ok(!facts.has(name), where(`${name} was created a second time`));
          const match = new RegExp(`^${SCHEDULE}-(\\d+)$`).exec(name);
          assert.ok(match, where(`${name} is not <schedule>-<unix seconds>`));
          const seconds = Number(match[1]);
          assert.equal(seconds % (SLOT_MS / 1000), 0, where(`${name} is not named after a slot of 0 */6 * * *`));
          const slot = new Date(seconds * 1000);
          assert.equal(
            child.metadata.annotations?.[SCHEDULED_TIME_ANNOTATION],
            iso(slot),
            where(`${name} has the wrong scheduled-time annotation`),
          );
          assert.equal(child.metadata.labels?.[SCHEDULE_LABEL], SCHEDULE, where(`${name} lacks the schedule label`));
          assert.equal(
            child.metadata.labels?.[CONTROLLER_UID_LABEL],
            uid,
            where(`${name} lacks the controller-uid label`),
          );
          assert.ok(slot > start, where(`${name} is for a slot before the schedule existed`));
          const lateness = call.at.getTime() - slot.getTime();
          assert.ok(lateness >= 0, where(`${name} was created ${-lateness} ms before its slot`));
          // On time, or (Forbid) as soon as the backups running at slot time have all finished. With 1–40 min runs
          // and 6 h between slots nothing ever blocks a slot; the rule stays exact if runtimes are made longer.
          const blockers = [...facts.values()].filter((f) => f.createdAt <= slot && f.finishAt > slot);
          const allowedFrom = Math.max(slot.getTime(), ...blockers.map((f) => f.finishAt.getTime()));
          assert.ok(
            call.at.getTime() - allowedFrom <= MAX_LATENESS_MS,
            where(`${name} was created ${lateness} ms after its slot`),
          );
          // Each backup runs 1 to 40 minutes and succeeds 4 times out of 5.
          const finishAt = new Date(call.at.getTime() + (60 + Math.floor(random() * 2341)) * 1000);
          const result: BackupResult = random() < SUCCESS_RATE ? 'succeeded' : 'failed';
          facts.set(name, { name, slot, createdAt: call.at, finishAt, result, finished: false });
          created.push(name);
        }
        for (const gone of applied.deleted) {
          // Only retention deletes: successful backups beyond `retention`, failed ones beyond the failed history
          // limit (checked against the stored state below); never a running one.
          const finished =
            conditionIn(gone.status, 'Ready')?.status === 'True' ||
            conditionIn(gone.status, 'Failed')?.status === 'True';
          assert.ok(
            finished,
            where(`${gone.metadata.name} was deleted but has not finished: ${JSON.stringify(gone.status)}`),
          );
          deleted.push(gone.metadata.name);
        }
        assert.deepEqual(applied.refused, [], where('the API server refused a create or delete'));

        // The answer against its own request: re-emitted children unchanged, a consistent status, the next resync.
        const observed = request.children[BACKUP_CHILDREN_KEY] ?? {};
        for (const child of answer.children) {
          const live = observed[child.metadata.name];
          if (live)
            assert.deepEqual(
              differences(child, live, ''),
              [],
              where(`re-emitted child ${child.metadata.name} differs from the stored one`),
            );
        }
        const newName = answer.children.find((c) => !observed[c.metadata.name])?.metadata.name;
        const active = Object.values(observed)
          .filter(
            (c) =>
              !c.metadata.deletionTimestamp &&
              conditionIn(c.status, 'Ready')?.status !== 'True' &&
              conditionIn(c.status, 'Failed')?.status !== 'True',
          )
          .map((c) => c.metadata.name);
        assert.deepEqual(
          answer.status.activeBackups,
          [...active, ...(newName ? [newName] : [])].sort(),
          where('wrong activeBackups in the answer'),
        );
        const recorded = [
          (request.parent.status as { lastScheduleTime?: string } | undefined)?.lastScheduleTime,
          ...Object.values(observed).map((c) => c.metadata.annotations?.[SCHEDULED_TIME_ANNOTATION]),
        ]
          .filter((t): t is string => t !== undefined)
          .sort()
          .at(-1);
        assert.equal(
          answer.status.lastScheduleTime,
          recorded,
          where('a slot is recorded once its backup is observed, not before'),
        );
        assert.equal(answer.status.nextScheduleTime, iso(nextSlotAfter(call.at)), where('wrong nextScheduleTime'));
        assert.deepEqual(
          { status: conditionIn(answer.status, 'Ready')?.status, reason: conditionIn(answer.status, 'Ready')?.reason },
          { status: 'True', reason: 'Scheduled' },
          where('Ready is not True/Scheduled'),
        );
        assert.equal(
          call.at.getTime() + Math.round((answer.resyncAfterSeconds ?? 0) * 1000),
          nextSlotAfter(call.at).getTime() + RESYNC_PAD_MS,
          where('the hook did not ask to be called back just after the next slot'),
        );
      };

      /** The state stored in the API server after a step settled. */
      const checkStored = async (where: (what: string) => string): Promise<void> => {
        const children = (await admin.request<{ items: KubernetesObject[] }>('GET', backupsPath(ns))).items;
        const all = [...facts.values()];
        const successes = all
          .filter((f) => f.finished && f.result === 'succeeded')
          .sort((a, b) => b.slot.getTime() - a.slot.getTime());
        const allFailed = all
          .filter((f) => f.finished && f.result === 'failed')
          .sort((a, b) => b.slot.getTime() - a.slot.getTime());
        const failed = allFailed
          .slice(0, FAILED_KEPT)
          .map((f) => f.name)
          .sort();
        const active = all
          .filter((f) => !f.finished)
          .map((f) => f.name)
          .sort();
        const namesWhere = (pick: (c: KubernetesObject) => boolean): string[] =>
          children
            .filter(pick)
            .map((c) => c.metadata.name)
            .sort();
        // Retention exact: the newest 5 successes and the newest 3 failures by slot are kept, every running one is kept.
        assert.deepEqual(
          namesWhere((c) => conditionIn(c.status, 'Ready')?.status === 'True'),
          successes
            .slice(0, RETENTION)
            .map((f) => f.name)
            .sort(),
          where(`the Ready backups are not the newest min(${RETENTION}, ${successes.length}) successes`),
        );
        assert.deepEqual(
          namesWhere((c) => conditionIn(c.status, 'Failed')?.status === 'True'),
          failed,
          where(`the Failed backups are not the newest min(${FAILED_KEPT}, ${allFailed.length}) failures`),
        );
        assert.deepEqual(
          namesWhere((c) => c.status === undefined),
          active,
          where('a running backup is missing'),
        );
        assert.ok(active.length <= 1, where(`two backups run at once under Forbid: ${active.join(', ')}`));
        assert.equal(
          children.length,
          Math.min(RETENTION, successes.length) + failed.length + active.length,
          where('unexpected children'),
        );

        const parent = await admin.request<KubernetesObject>('GET', schedulePath(ns, SCHEDULE));
        const status = parent.status as Record<string, unknown>;
        assert.equal(status.lastScheduleTime, all.at(-1) && iso(all.at(-1)!.slot), where('wrong lastScheduleTime'));
        assert.deepEqual(status.activeBackups, active, where('wrong activeBackups'));
        assert.equal(status.nextScheduleTime, iso(nextSlotAfter(clock())), where('wrong nextScheduleTime'));
        assert.equal(status.observedGeneration, 1, where('observedGeneration was not injected'));
        assert.deepEqual(
          { status: conditionIn(status, 'Ready')?.status, reason: conditionIn(status, 'Ready')?.reason },
          { status: 'True', reason: 'Scheduled' },
          where('Ready is not True/Scheduled'),
        );
        const pending = mc.pending();
        assert.deepEqual(
          pending.map((p) => [p.reason, p.dueAt.getTime()]),
          [['resyncAfter', nextSlotAfter(clock()).getTime() + RESYNC_PAD_MS]],
          where('exactly one resync pending, just after the next slot'),
        );
      };

      const step = async (kind: StepKind, act: () => Promise<void> | void): Promise<Step> => {
        const where = (what: string): string =>
          `${what} [seed ${SEED}, ${label}, step ${steps.length + 1} (${kind}) at ${clock().toISOString()}]`;
        await act();
        await mc.settle();
        assert.deepEqual(mc.errors, [], where('sync errors'));
        const calls = mc.calls.slice(checkedCalls);
        checkedCalls = mc.calls.length;
        const before = { created: created.length, deleted: deleted.length };
        for (const call of calls) checkCall(call, (what) => where(`${what} (call #${call.seq} via ${call.url})`));
        await checkStored(where);
        const last = calls.at(-1);
        const record: Step = {
          kind,
          at: clock(),
          calls,
          created: created.slice(before.created),
          deleted: deleted.slice(before.deleted),
          finalAnswer: last ? normalise(last.response) : '',
        };
        steps.push(record);
        return record;
      };

      await step('start', () => {});
      for (;;) {
        // Metacontroller's requeue and the hook's clock are not the same clock: a resync fires between 150 ms
        // early and 250 ms late, so it sometimes arrives before the slot (the hook must then just requeue).
        const skewMs = Math.floor(random() * 400) - 150;
        const due = mc.pending()[0]?.dueAt;
        const resyncAt = due && new Date(Math.max(clock().getTime(), due.getTime() + skewMs));
        const finishing = [...facts.values()]
          .filter((f) => !f.finished)
          .sort((a, b) => a.finishAt.getTime() - b.finishAt.getTime())[0];
        const next =
          finishing && (!resyncAt || finishing.finishAt <= resyncAt)
            ? { time: finishing.finishAt, finishing }
            : resyncAt && { time: resyncAt, finishing: undefined };
        if (!next || next.time > end) break;

        simulated = new Date(next.time);
        if (next.finishing) {
          const fact = next.finishing;
          fact.finished = true;
          await step('finish', async () => {
            const child = await admin.request<KubernetesObject>('GET', backupsPath(ns, fact.name));
            const status = outcomeStatus(child, fact.result, iso(clock()));
            assert.ok(
              isReadableBackup({ spec: child.spec, status }),
              `the decorator's status of ${fact.name} is readable: ${JSON.stringify(status)}`,
            );
            // The decorator's write: the whole status through the status subresource (a child change for the schedule).
            await admin.request('PUT', backupsPath(ns, `${fact.name}/status`), { body: { ...child, status } });
          });
        } else if (clock() < due!) {
          // Fires before it is due: the stand-in takes it out of the delaying queue now.
          if (clock().getTime() < due!.getTime() - RESYNC_PAD_MS) earlyWakeups += 1; // before the slot it waits for
          await step('early-resync', () => {
            assert.ok(mc.fire(target), 'a resync was pending');
          });
        } else {
          await step('resync', () => {}); // due at the clock: settle() lets it fire
        }
        // Metacontroller also syncs again on informer events: same clock, same objects, so nothing may change.
        if (random() < DUPLICATE_SYNC_RATE) {
          const duplicate = await step('duplicate', () => mc.enqueue(target));
          assert.equal(duplicate.calls.length, 1, `seed ${SEED}: one call for a duplicate sync`);
          assert.deepEqual(
            {
              created: duplicate.created,
              deleted: duplicate.deleted,
              statusWritten: duplicate.calls[0]!.applied?.statusWritten,
            },
            { created: [], deleted: [], statusWritten: false },
            `seed ${SEED}, ${label}: a sync with nothing new at ${clock().toISOString()} was not a no-op`,
          );
          quietSyncs += 1;
        }
      }

      const finished = [...facts.values()].filter((f) => f.finished);
      const parent = await admin.request<KubernetesObject>('GET', schedulePath(ns, SCHEDULE));
      const children = (await admin.request<{ items: KubernetesObject[] }>('GET', backupsPath(ns))).items.map((c) => ({
        name: c.metadata.name,
        labels: c.metadata.labels,
        annotations: c.metadata.annotations,
        spec: c.spec,
        status: c.status,
      }));
      return {
        created,
        deleted,
        steps,
        calls: mc.calls,
        finalChildren: normalise(
          children.map(({ status, ...rest }) => ({
            ...rest,
            outcome:
              conditionIn(status, 'Ready')?.status === 'True'
                ? 'succeeded'
                : conditionIn(status, 'Failed')?.status === 'True'
                  ? 'failed'
                  : 'active',
          })),
        ),
        finalStatus: JSON.parse(normalise(parent.status)),
        finalSpec: parent.spec as Record<string, unknown>,
        earlyWakeups,
        quietSyncs,
        successes: finished.filter((f) => f.result === 'succeeded').length,
        failures: finished.filter((f) => f.result === 'failed').length,
        slots: expectedSlots(),
      };
    } finally {
      await mc.stop();
    }
  }

  const single = async (): Promise<ScenarioResult> => (singleRun ??= await runScenario([one.url], 'one server'));

  it('creates exactly one backup per slot, on time, never reuses a name, and keeps retention exact at every step', async (t) => {
    const slots = expectedSlots();
    // 30 days of 4 slots a day, strictly after the schedule's creation (never exactly on a slot at real time).
    assert.equal(slots.length, 120);

    const started = Date.now();
    const run = await single();
    const count = (kind: StepKind): number => run.steps.filter((s) => s.kind === kind).length;
    t.diagnostic(
      `seed ${SEED}, start ${start.toISOString()}: ${run.steps.length} steps (${count('resync')} resyncs at or after their due time, ${count('early-resync')} fired early (${run.earlyWakeups} of them before their slot); ${count('finish')} outcomes; ${count('duplicate')} duplicates, ` +
        `${run.quietSyncs} with nothing new), ${run.calls.length} hook calls, ${run.created.length} created, ${run.successes} succeeded, ${run.failures} failed, ${run.deleted.length} deleted, in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
    assert.deepEqual(run.created, slots.map(nameOf), `seed ${SEED}: not one backup per slot, in order`);
    assert.equal(new Set(run.created).size, run.created.length);

    // The random outcomes really were mixed, and retention deleted exactly the successes beyond the newest 5 and
    // the failures beyond the newest 3.
    assert.ok(
      run.successes > RETENTION && run.failures > FAILED_KEPT,
      `seed ${SEED}: ${run.successes} successes, ${run.failures} failures`,
    );
    assert.equal(run.deleted.length, run.successes - RETENTION + run.failures - FAILED_KEPT, `seed ${SEED}: deletions`);
    // Some resyncs fired before their slot; the hook created nothing early (checked at each call) and requeued.
    assert.ok(run.earlyWakeups > 0, `seed ${SEED}: no early resync was simulated`);
    assert.ok(run.quietSyncs > 0, `seed ${SEED}: no sync with nothing new was simulated`);
    assert.ok(run.calls.length > run.steps.length, 'writes trigger further syncs (more calls than steps)');
    assert.equal(run.finalSpec.concurrencyPolicy, 'Forbid', 'the CRD default applies');
    assert.equal(run.finalSpec.failedBackupsHistoryLimit, FAILED_KEPT, 'the CRD default applies');
    const final = run.finalStatus as Record<string, unknown>;
    assert.equal(
      final.lastScheduleTime,
      iso(slots.at(-1)!),
      `seed ${SEED}: final lastScheduleTime (the last backup is observed once settled)`,
    );
    assert.equal(
      final.nextScheduleTime,
      iso(nextSlotAfter(run.steps.at(-1)!.at)),
      `seed ${SEED}: final nextScheduleTime`,
    );
    assert.deepEqual(
      { status: conditionIn(final, 'Ready')?.status, reason: conditionIn(final, 'Ready')?.reason },
      { status: 'True', reason: 'Scheduled' },
    );
  });

  it('two server instances answering alternately produce exactly the history of one', async () => {
    const reference = await single();
    const alternating = await runScenario([one.url, two.url], 'two servers');

    const urls = alternating.calls.map((c) => c.url);
    assert.ok(
      urls.every((url, i) => url.startsWith(i % 2 === 0 ? one.url : two.url)),
      'the servers did not alternate',
    );
    assert.deepEqual(alternating.created, reference.created, `seed ${SEED}: created names differ`);
    assert.deepEqual(alternating.deleted, reference.deleted, `seed ${SEED}: deleted names differ`);
    assert.equal(alternating.finalChildren, reference.finalChildren, `seed ${SEED}: final children differ`);
    assert.deepEqual(alternating.finalStatus, reference.finalStatus, `seed ${SEED}: final status differs`);
    // Stronger than the outcome: every step did the same and ended with the same answer (normalised: namespace,
    // schedule uid), whichever server gave it. (How many syncs a step takes depends on when watch events arrive.)
    const summary = (r: ScenarioResult) =>
      r.steps.map((s) => ({
        kind: s.kind,
        at: s.at.toISOString(),
        created: s.created,
        deleted: s.deleted,
        finalAnswer: s.finalAnswer,
      }));
    assert.deepEqual(summary(alternating), summary(reference), `seed ${SEED}: histories differ`);
  });
});
