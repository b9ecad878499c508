// Alternating rounds: every contender of a scenario is measured once per round, the order
// rotating from round to round (A B C, B C A, C A B...), so a slow spell on the shared machine
// hits every contender alike instead of one of them.

/**
 * Runs `measure(contender, round)` for each contender in each of `rounds` rounds after one
 * warm-up call per contender (`warmup(contender)`, results discarded). Returns the samples
 * per contender name, in round order.
 */
export async function alternate({ contenders, rounds, warmup, measure, log }) {
  const samples = new Map(contenders.map((c) => [c.name, []]));
  if (warmup) {
    for (const contender of contenders) {
      log?.(`  warm-up ${contender.name}`);
      await warmup(contender);
    }
  }
  for (let round = 0; round < rounds; round++) {
    for (let k = 0; k < contenders.length; k++) {
      const contender = contenders[(round + k) % contenders.length];
      const sample = await measure(contender, round);
      log?.(`  round ${round + 1}/${rounds} ${contender.name}: ${describe(sample)}`);
      samples.get(contender.name).push(sample);
    }
  }
  return samples;
}

function describe(sample) {
  if (typeof sample !== 'object' || sample === null) return String(sample);
  return Object.entries(sample)
    .filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toFixed(3)}`)
    .join(' ');
}
