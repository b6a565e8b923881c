/** "Did you mean …" hints: the closest candidate by edit distance, if it is close enough. */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  const previous = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) previous[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diagonal = previous[0]!;
    previous[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = previous[j]!;
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      previous[j] = Math.min(above + 1, previous[j - 1]! + 1, diagonal + cost);
      diagonal = above;
    }
  }
  return previous[b.length]!;
}

/** The candidate closest to `input`, or undefined when none is plausibly meant. */
export function didYouMean(input: string, candidates: Iterable<string>): string | undefined {
  const lowered = input.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(lowered, candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  if (best === undefined) return undefined;
  const limit = Math.max(1, Math.floor(Math.max(input.length, best.length) / 3));
  if (bestDistance <= limit) return best;
  // A prefix or suffix relation ("keep" for "keep_last") is a plausible typo too.
  if (input.length >= 3 && (best.startsWith(input) || input.startsWith(best))) return best;
  return undefined;
}
