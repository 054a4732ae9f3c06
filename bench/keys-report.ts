import { table, targetsTable, type TargetCheck } from './report.js';

/** The key providers of `--keys`, in the order they run and are reported. */
export const KEY_PROVIDER_NAMES = ['env', 'aws-kms', 'vault-transit', 'vault-kv'] as const;

/** A key provider of `--keys`. */
export type KeyProviderName = (typeof KEY_PROVIDER_NAMES)[number];

/** Warm throughput each provider must reach, as a share of the env provider's. */
export const WARM_TARGET_RATIO = 0.9;

/** One provider's figures in `npm run bench -- --keys --json`. */
export interface KeyProviderResult {
  /** Data keys created by the writes (one per session), counted in storage. */
  dataKeys: number;
  /** Key ring -> provider requests (`KeyRing.stats().providerCalls`) during the cold pass. */
  coldProviderCalls: number;
  /** The same, summed over every warm pass. */
  warmProviderCalls: number;
  /** Items read per second by the best warm pass. */
  warmItemsPerSec: number;
  /** Key ring -> provider requests during the writes (each session's first write creates its key). */
  writeProviderCalls: number;
  /** Items read per second by the cold pass (each session's first read unwraps its key). */
  coldItemsPerSec: number;
  /** Items read per second by the median warm pass. */
  warmItemsPerSecMedian: number;
  /** Requests the provider's test server received during the cold pass; null for env (no server). */
  coldServerRequests: number | null;
  /** The same, summed over every warm pass. */
  warmServerRequests: number | null;
}

/** What `npm run bench -- --keys --json` prints: exactly this shape. */
export interface KeysResult {
  providers: Record<KeyProviderName, KeyProviderResult>;
}

/** Figures only the human table shows, per provider. */
export interface KeyProviderDetails {
  /** Items written per second (one `addItems` of 20 per session, its key created on the way). */
  writeItemsPerSec: number;
  /** `provider.init()` in ms (test server already running). */
  initMs: number;
  /** The unwrap operation its server counts (`Decrypt`), or null when unwraps make no request. */
  unwrapOperation: string | null;
  /** Requests of {@link unwrapOperation} during the cold pass; null where there is none. */
  coldServerUnwraps: number | null;
  /** Key ring cache misses counted during the cold pass (`KeyRing.stats().cacheMisses`). */
  coldCacheMisses: number;
  /** Failed, retried and fast-failed provider calls over the whole run (normally all 0). */
  providerFailures: number;
  providerRetries: number;
  providerFastFailures: number;
  /** Items/s of every warm pass, in round order. */
  warmRounds: readonly number[];
}

/** Everything the human report needs besides {@link KeysResult}. */
export interface KeysDetails {
  providers: Record<KeyProviderName, KeyProviderDetails>;
  sessions: number;
  itemsPerSession: number;
  contentLength: number;
  warmRounds: number;
  totalSeconds: number;
}

const int = (value: number) => Math.round(value).toLocaleString('en-US');
const ratio = (value: number) => `${value.toFixed(2)}x`;
const orNa = (value: number | null) => (value === null ? 'n/a' : int(value));

/** The human-readable report of `--keys`: results, notes, then targets with pass/fail. */
export function formatKeysReport(result: KeysResult, details: KeysDetails): string {
  const env = result.providers.env;
  const items = details.sessions * details.itemsPerSession;
  const results = table(
    [
      'provider',
      'data keys',
      'write calls',
      'write items/s',
      'cold calls',
      'cold server reqs',
      'cold items/s',
      'warm calls',
      'warm server reqs',
      'warm items/s',
      'median',
      'vs env',
    ],
    KEY_PROVIDER_NAMES.map((name) => {
      const r = result.providers[name];
      const d = details.providers[name];
      const coldServer =
        r.coldServerRequests === null
          ? 'n/a'
          : d.unwrapOperation === null || d.coldServerUnwraps === null
            ? int(r.coldServerRequests)
            : `${int(r.coldServerRequests)} (${int(d.coldServerUnwraps)} ${d.unwrapOperation})`;
      return [
        name,
        int(r.dataKeys),
        int(r.writeProviderCalls),
        int(d.writeItemsPerSec),
        int(r.coldProviderCalls),
        coldServer,
        int(r.coldItemsPerSec),
        int(r.warmProviderCalls),
        orNa(r.warmServerRequests),
        int(r.warmItemsPerSec),
        int(r.warmItemsPerSecMedian),
        ratio(r.warmItemsPerSec / env.warmItemsPerSec),
      ];
    }),
  );

  const counters = KEY_PROVIDER_NAMES.map((name) => {
    const d = details.providers[name];
    return (
      `  ${name}: init ${d.initMs.toFixed(1)} ms; cold pass: ${int(details.sessions)} key lookups, key ring cacheMisses ${int(d.coldCacheMisses)}; ` +
      `provider failures ${d.providerFailures}, retries ${d.providerRetries}, fast failures ${d.providerFastFailures}; ` +
      `warm rounds ${d.warmRounds.map(int).join(' / ')} items/s`
    );
  });

  const checks = KEY_PROVIDER_NAMES.flatMap((name): TargetCheck[] => {
    const r = result.providers[name];
    const warmRatio = r.warmItemsPerSec / env.warmItemsPerSec;
    return [
      {
        what: `${name}: cold reads`,
        target: `1 provider call per data key (${int(r.dataKeys)})`,
        actual: `${int(r.coldProviderCalls)} calls`,
        pass: r.coldProviderCalls === r.dataKeys,
      },
      {
        what: `${name}: warm reads`,
        target: '0 provider calls',
        actual: `${int(r.warmProviderCalls)} calls`,
        pass: r.warmProviderCalls === 0,
      },
      {
        what: `${name}: warm items/s`,
        target:
          name === 'env'
            ? 'the reference'
            : `>= ${WARM_TARGET_RATIO.toFixed(2)}x env (${int(WARM_TARGET_RATIO * env.warmItemsPerSec)})`,
        actual: `${int(r.warmItemsPerSec)} (${ratio(warmRatio)})`,
        pass: name === 'env' ? null : warmRatio >= WARM_TARGET_RATIO,
      },
    ];
  });
  const { targets, applicable, passed } = targetsTable(checks);

  return [
    `nest-encrypted-sessions key provider benchmark: ${int(details.sessions)} sessions x ${details.itemsPerSession} items ` +
      `(${int(items)} items of ${details.contentLength} characters) per provider, MemorySessionStorage`,
    '',
    results,
    '',
    'Key ring counters and warm rounds:',
    ...counters,
    '',
    `Storage: MemorySessionStorage (in process), one per provider, so storage cost does not mask the provider's; the providers are real, the servers are the loopback wire-protocol test servers of test/support (real @aws-sdk/client-kms and node-vault clients, HTTP on 127.0.0.1).`,
    `Writes: one addItems batch of ${details.itemsPerSession} per session; its first write creates the session's data key (one generateDataKey call).`,
    `Cold: keyRing.clear() (every cached data key dropped, as after a restart), then getItems() once per session, one after another: each unwraps its data key once. The session handles are kept (they hold no keys).`,
    `Warm: the same reads again, no key cache cleared; ${details.warmRounds} rounds with the providers interleaved (round r starts with the r-th provider), GC before each pass; "warm items/s" is the best round, "median" the median. Warm reads call no provider, so the ratio to env compares identical code paths: it measures noise.`,
    `items/s: ${int(items)} items / the summed time of the ${int(details.sessions)} getItems() calls (each checked after its clock stopped).`,
    `Provider calls: KeyRing -> provider requests, KeyRing.stats().providerCalls (retries included). Server requests: what the test server received, all requests (in parentheses, those of the unwrap operation: KMS Decrypt, Vault transit/decrypt/<key>). vault-kv holds its root keys in process after init() and re-reads the secret's metadata only every keyCacheTtlMs (5 min by default): its unwraps are provider calls that make no Vault request.`,
    `Total run time ${details.totalSeconds.toFixed(1)} s.`,
    '',
    targets,
    '',
    `${passed}/${applicable.length} targets met (targets are reported, not enforced).`,
    '',
  ].join('\n');
}
