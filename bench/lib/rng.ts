/** Seeded randomness for reproducible traces: the same seed gives the same trace on every machine. */

export type Random = () => number;

/** mulberry32: a small, fast 32-bit PRNG; plenty for workload generation (not for anything secret). */
export function seededRandom(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Zipf over ranks 0..n-1: P(k) ∝ 1/(k+1)^s. Sampling is a binary search over the cumulative weights. */
export function zipfSampler(n: number, s: number, random: Random): () => number {
  const cdf = new Float64Array(n);
  let total = 0;
  for (let k = 0; k < n; k++) {
    total += 1 / (k + 1) ** s;
    cdf[k] = total;
  }
  return () => {
    const u = random() * total;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((cdf[mid] ?? total) < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/** The share of all draws that rank 0 receives under Zipf(n, s). */
export function zipfTopShare(n: number, s: number): number {
  let total = 0;
  for (let k = 0; k < n; k++) total += 1 / (k + 1) ** s;
  return 1 / total;
}

/** Standard normal by Box–Muller. */
export function normal(random: Random): number {
  const u = 1 - random();
  const v = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** Log-normal with the given median and shape sigma. */
export function logNormal(random: Random, median: number, sigma: number): number {
  return median * Math.exp(sigma * normal(random));
}

export function exponential(random: Random, mean: number): number {
  return -mean * Math.log(1 - random());
}
