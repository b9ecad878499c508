import { describe, expect, it } from 'vitest';
import { isSentinelError, type Tool } from '@sentinel/api-core';
import { calculatorTool, evaluateExpression } from '../src/tools/calculator.js';
import { createCurrentTimeTool, currentTimeTool, isoInZone } from '../src/tools/current-time.js';
import { ToolSet } from '../src/tools/tool-set.js';

function failure(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (err) {
    expect(isSentinelError(err)).toBe(true);
    return err as { code: string; message: string };
  }
  throw new Error('expected a throw');
}

async function rejection(promise: Promise<unknown>): Promise<{ code: string; message: string; cause?: unknown }> {
  try {
    await promise;
  } catch (err) {
    expect(isSentinelError(err)).toBe(true);
    return err as { code: string; message: string };
  }
  throw new Error('expected a rejection');
}

describe('calculator parser', () => {
  it.each([
    ['1 + 2 * 3', 7],
    ['(1 + 2) * 3', 9],
    ['10 - 4 - 3', 3],
    ['24 / 4 / 2', 3],
    ['7 % 4', 3],
    ['2 ^ 3 ^ 2', 512],
    ['(2 ^ 3) ^ 2', 64],
    ['-2 ^ 2', -4],
    ['2 ^ -1', 0.5],
    ['--3', 3],
    ['-(-3) + +4', 7],
    ['1.5e3 + .5', 1500.5],
    ['2E-2', 0.02],
    ['sqrt(16) + abs(-3)', 7],
    ['round(2.5) + floor(2.7) + ceil(2.1)', 8],
    ['min(4, 2, 8) * max(1, 9)', 18],
    ['2 * pi', 2 * Math.PI],
    ['e ^ 1', Math.E],
    ['  6*7  ', 42],
    ['-0 * 5', 0],
  ])('%s = %d', (expression, expected) => {
    expect(evaluateExpression(expression)).toBeCloseTo(expected, 12);
  });

  it.each([
    ['1 / 0', 'division by zero'],
    ['5 % 0', 'modulo by zero'],
    ['foo + 1', 'unknown identifier "foo"'],
    ['process.exit(1)', 'unknown identifier "process"'],
    ['constructor', 'unknown identifier "constructor"'],
    ['__proto__', 'unknown identifier "__proto__"'],
    ['(1 + 2', 'missing ")"'],
    ['1 + 2)', 'unexpected ")" at position 6'],
    ['1 +', 'unexpected end of expression'],
    ['', 'empty expression'],
    ['2 3', 'unexpected "3" at position 3'],
    ['sqrt(-1)', 'square root of a negative number'],
    ['sqrt 4', 'function sqrt needs parentheses: sqrt(...)'],
    ['abs(1, 2)', 'function abs takes 1 argument(s), got 2'],
    ['10 ^ 400', 'the result is not a finite number'],
    ['"a"', 'unexpected """ at position 1'],
  ])('%s fails with a readable message', (expression, message) => {
    const err = failure(() => evaluateExpression(expression));
    expect(err.code).toBe('invalid_request');
    expect(err.message).toBe(message);
  });

  it('caps the length and the nesting instead of recursing without bound', () => {
    expect(failure(() => evaluateExpression('1+'.repeat(500) + '1')).message).toBe('expression longer than 1000 characters');
    expect(failure(() => evaluateExpression('('.repeat(200) + '1' + ')'.repeat(200))).message).toBe('expression nested deeper than 100 levels');
    expect(failure(() => evaluateExpression('-'.repeat(300) + '1')).message).toBe('expression nested deeper than 100 levels');
    expect(evaluateExpression('('.repeat(50) + '1' + ')'.repeat(50))).toBe(1);
  });

  it('never evaluates code: the source has no eval or Function constructor', async () => {
    const { readFileSync } = await import('node:fs');
    const source = readFileSync(new URL('../src/tools/calculator.ts', import.meta.url), 'utf8');
    expect(source).not.toMatch(/\beval\s*\(|new Function|Function\s*\(/);
    // A payload that would have side effects under eval is just a parse error here.
    expect(failure(() => evaluateExpression('globalThis.x = 1')).message).toBe('unknown identifier "globalThis"');
    expect((globalThis as Record<string, unknown>).x).toBeUndefined();
  });

  it('runs as a tool returning {expression, result}', async () => {
    const signal = new AbortController().signal;
    await expect(calculatorTool.run({ expression: '6*7' }, { signal, agentId: 'a' })).resolves.toEqual({ expression: '6*7', result: 42 });
  });
});

describe('current_time', () => {
  const fixed = Date.UTC(2026, 4, 1, 12, 3, 7, 123); // 2026-05-01T12:03:07.123Z
  const tool = createCurrentTimeTool({ now: () => fixed });
  const ctx = { signal: new AbortController().signal, agentId: 'a' };

  it('defaults to UTC', async () => {
    await expect(tool.run({}, ctx)).resolves.toEqual({ iso: '2026-05-01T12:03:07.123Z', timezone: 'UTC', unix: Math.floor(fixed / 1000) });
  });

  it('shows local time with the zone offset', async () => {
    await expect(tool.run({ timezone: 'Asia/Kolkata' }, ctx)).resolves.toMatchObject({ iso: '2026-05-01T17:33:07.123+05:30', timezone: 'Asia/Kolkata' });
    await expect(tool.run({ timezone: 'europe/paris' }, ctx)).resolves.toMatchObject({ iso: '2026-05-01T14:03:07.123+02:00', timezone: 'Europe/Paris' });
    await expect(tool.run({ timezone: 'America/New_York' }, ctx)).resolves.toMatchObject({ iso: '2026-05-01T08:03:07.123-04:00' });
    expect(isoInZone(new Date(Date.UTC(2026, 0, 15, 0, 30)), 'America/St_Johns')).toBe('2026-01-14T21:00:00.000-03:30');
  });

  it('refuses an unknown zone clearly', async () => {
    const err = await rejection(tool.run({ timezone: 'Mars/Olympus_Mons' }, ctx));
    expect(err.code).toBe('invalid_request');
    expect(err.message).toBe('unknown time zone "Mars/Olympus_Mons": use an IANA name such as "Europe/Paris" or "UTC"');
  });

  it('uses the real clock by default', async () => {
    const before = Math.floor(Date.now() / 1000);
    const result = (await currentTimeTool.run({}, ctx)) as { unix: number };
    expect(result.unix).toBeGreaterThanOrEqual(before);
    expect(result.unix).toBeLessThanOrEqual(before + 2);
  });
});

describe('ToolSet', () => {
  const signal = new AbortController().signal;

  function registry(...extra: Tool[]): ToolSet {
    const r = new ToolSet({ maxResultChars: 1000 }).register(calculatorTool).register(currentTimeTool);
    for (const tool of extra) r.register(tool);
    return r;
  }

  it('validates parameters against the tool schema, listing the issues', async () => {
    const tools = registry();
    const err = await rejection(tools.run('calculator', { expr: '1' }, { signal }));
    expect(err.code).toBe('invalid_request');
    expect(err.message).toBe('invalid parameters of tool calculator: /expression: "expression" is required; /expr: unknown field "expr"');
    await expect(tools.run('calculator', { expression: '2^10' }, { signal })).resolves.toEqual({ expression: '2^10', result: 1024 });
  });

  it('refuses unknown tools, malformed names and duplicates', async () => {
    const tools = registry();
    expect((await rejection(tools.run('web_search', {}, { signal }))).message).toBe('tool web_search is not available on this server');
    expect(() => tools.register({ ...calculatorTool })).toThrow('tool "calculator" is already registered');
    expect(() => tools.register({ ...calculatorTool, name: 'Bad-Name' })).toThrow('invalid tool name "Bad-Name"');
    expect(tools.unregister('calculator')).toBe(true);
    expect(tools.names()).toEqual(['current_time']);
  });

  it('gives specs for the names asked, in order, skipping unknown ones', () => {
    const specs = registry().specs(['current_time', 'nope', 'calculator']);
    expect(specs.map((s) => s.name)).toEqual(['current_time', 'calculator']);
    expect(specs[1]?.parameters).toEqual(calculatorTool.parameters);
    expect(specs[1]?.description).toContain('arithmetic');
  });

  it('times out a slow tool, even one that ignores its signal', async () => {
    const stubborn: Tool = { name: 'stubborn', description: 'never ends', parameters: { type: 'object' }, run: () => new Promise(() => {}) };
    const tools = registry(stubborn);
    const started = Date.now();
    const err = await rejection(tools.run('stubborn', {}, { signal, timeoutMs: 50 }));
    expect(err.code).toBe('unavailable');
    expect(err.message).toBe('tool stubborn timed out after 50 ms');
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('stops when the caller aborts, and the tool sees the abort', async () => {
    let sawAbort = false;
    const waiter: Tool = {
      name: 'waiter',
      description: 'waits for its signal',
      parameters: { type: 'object' },
      run: (_p, ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => ((sawAbort = true), reject(new Error('aborted'))))),
    };
    const tools = registry(waiter);
    const controller = new AbortController();
    const running = tools.run('waiter', {}, { signal: controller.signal, agentId: 'agent-1' });
    setTimeout(() => controller.abort(), 20);
    const err = await rejection(running);
    expect(err.message).toBe('tool waiter was cancelled');
    expect(sawAbort).toBe(true);
  });

  it('hides unexpected failures behind a generic message, keeps SentinelErrors, caps results', async () => {
    const broken: Tool = { name: 'broken', description: 'x', parameters: { type: 'object' }, run: async () => { throw new Error('db password is hunter2'); } };
    const huge: Tool = { name: 'huge', description: 'x', parameters: { type: 'object' }, run: async () => 'x'.repeat(2000) };
    const tools = registry(broken, huge);
    const err = await rejection(tools.run('broken', {}, { signal }));
    expect(err.code).toBe('internal');
    expect(err.message).toBe('tool broken failed');
    expect(err.message).not.toContain('hunter2');
    expect((await rejection(tools.run('calculator', { expression: '1/0' }, { signal }))).message).toBe('division by zero');
    expect((await rejection(tools.run('huge', {}, { signal }))).message).toBe('tool huge returned more than 1000 characters');
  });
});
