/**
 * `calculator`: arithmetic by a small recursive-descent parser, never `eval`/`Function`, so an
 * expression (often written by a model, from user text) can compute but never run code.
 *
 * Grammar, lowest precedence first:
 *   expression := term (('+' | '-') term)*
 *   term       := unary (('*' | '/' | '%') unary)*
 *   unary      := ('+' | '-') unary | power
 *   power      := primary ('^' unary)?          (right-associative; -2^2 = -(2^2))
 *   primary    := number | constant | function '(' expression (',' expression)* ')' | '(' expression ')'
 */
import { invalidRequest, SentinelError } from '../contract/errors.js';
import type { Tool } from './types.js';

/** Longest expression accepted, in characters. */
export const CALCULATOR_MAX_LENGTH = 1000;
/** Deepest nesting of parentheses and unary signs; beyond it the expression is refused, not recursed into. */
const MAX_DEPTH = 100;

const CONSTANTS: Record<string, number> = { pi: Math.PI, e: Math.E };

interface CalcFunction {
  minArgs: number;
  maxArgs: number;
  apply(args: number[]): number;
}

const FUNCTIONS: Record<string, CalcFunction> = {
  sqrt: {
    minArgs: 1,
    maxArgs: 1,
    apply: ([x = 0]) => {
      if (x < 0) throw calcError('square root of a negative number');
      return Math.sqrt(x);
    },
  },
  abs: { minArgs: 1, maxArgs: 1, apply: ([x = 0]) => Math.abs(x) },
  round: { minArgs: 1, maxArgs: 1, apply: ([x = 0]) => Math.round(x) },
  floor: { minArgs: 1, maxArgs: 1, apply: ([x = 0]) => Math.floor(x) },
  ceil: { minArgs: 1, maxArgs: 1, apply: ([x = 0]) => Math.ceil(x) },
  min: { minArgs: 1, maxArgs: 100, apply: (args) => Math.min(...args) },
  max: { minArgs: 1, maxArgs: 100, apply: (args) => Math.max(...args) },
};

function calcError(message: string): SentinelError {
  return invalidRequest(message);
}

const NUMBER_RE = /(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/y;
const IDENT_RE = /[A-Za-z_][A-Za-z0-9_]*/y;

class Parser {
  private pos = 0;
  private depth = 0;

  constructor(private readonly src: string) {}

  parse(): number {
    this.skipSpace();
    if (this.pos >= this.src.length) throw calcError('empty expression');
    const value = this.expression();
    this.skipSpace();
    if (this.pos < this.src.length) throw this.unexpected();
    return value;
  }

  private skipSpace(): void {
    while (this.pos < this.src.length && /\s/.test(this.src[this.pos] ?? '')) this.pos++;
  }

  private peek(): string | undefined {
    this.skipSpace();
    return this.src[this.pos];
  }

  private unexpected(): SentinelError {
    const ch = this.src[this.pos];
    return ch === undefined ? calcError('unexpected end of expression') : calcError(`unexpected "${ch}" at position ${this.pos + 1}`);
  }

  private enter(): void {
    if (++this.depth > MAX_DEPTH) throw calcError(`expression nested deeper than ${MAX_DEPTH} levels`);
  }

  private expression(): number {
    let value = this.term();
    for (let op = this.peek(); op === '+' || op === '-'; op = this.peek()) {
      this.pos++;
      const right = this.term();
      value = op === '+' ? value + right : value - right;
    }
    return value;
  }

  private term(): number {
    let value = this.unary();
    for (let op = this.peek(); op === '*' || op === '/' || op === '%'; op = this.peek()) {
      this.pos++;
      const right = this.unary();
      if ((op === '/' || op === '%') && right === 0) throw calcError(op === '/' ? 'division by zero' : 'modulo by zero');
      value = op === '*' ? value * right : op === '/' ? value / right : value % right;
    }
    return value;
  }

  private unary(): number {
    const op = this.peek();
    if (op === '+' || op === '-') {
      this.pos++;
      this.enter();
      const operand = this.unary();
      this.depth--;
      return op === '-' ? -operand : operand;
    }
    return this.power();
  }

  private power(): number {
    const base = this.primary();
    if (this.peek() !== '^') return base;
    this.pos++;
    this.enter();
    // The exponent is a unary, which itself may be a power: 2^3^2 = 2^(3^2).
    const exponent = this.unary();
    this.depth--;
    return base ** exponent;
  }

  private primary(): number {
    const ch = this.peek();
    if (ch === '(') {
      this.pos++;
      this.enter();
      const value = this.expression();
      this.depth--;
      if (this.peek() !== ')') throw this.peek() === undefined ? calcError('missing ")"') : this.unexpected();
      this.pos++;
      return value;
    }
    NUMBER_RE.lastIndex = this.pos;
    const number = NUMBER_RE.exec(this.src);
    if (number) {
      this.pos += number[0].length;
      return Number(number[0]);
    }
    IDENT_RE.lastIndex = this.pos;
    const ident = IDENT_RE.exec(this.src);
    if (ident) {
      const name = ident[0];
      this.pos += name.length;
      const fn = Object.hasOwn(FUNCTIONS, name) ? FUNCTIONS[name] : undefined;
      if (fn) return this.call(name, fn);
      const constant = Object.hasOwn(CONSTANTS, name) ? CONSTANTS[name] : undefined;
      if (constant !== undefined) return constant;
      throw calcError(`unknown identifier "${name}"`);
    }
    throw this.unexpected();
  }

  private call(name: string, fn: CalcFunction): number {
    if (this.peek() !== '(') throw calcError(`function ${name} needs parentheses: ${name}(...)`);
    this.pos++;
    this.enter();
    const args: number[] = [];
    if (this.peek() !== ')') {
      args.push(this.expression());
      while (this.peek() === ',') {
        this.pos++;
        args.push(this.expression());
      }
    }
    this.depth--;
    if (this.peek() !== ')') throw this.peek() === undefined ? calcError('missing ")"') : this.unexpected();
    this.pos++;
    if (args.length < fn.minArgs || args.length > fn.maxArgs) {
      const wanted = fn.minArgs === fn.maxArgs ? `${fn.minArgs}` : `${fn.minArgs} to ${fn.maxArgs}`;
      throw calcError(`function ${name} takes ${wanted} argument(s), got ${args.length}`);
    }
    return fn.apply(args);
  }
}

/**
 * Evaluates an arithmetic expression: numbers (decimals, exponents), `+ - * / % ^`, unary signs,
 * parentheses, `sqrt abs round floor ceil min max`, constants `pi e`. Throws SentinelError
 * `invalid_request` with a readable message (division by zero, unknown identifier, syntax
 * errors, a result that is not a finite number).
 */
export function evaluateExpression(expression: string): number {
  if (expression.length > CALCULATOR_MAX_LENGTH) throw calcError(`expression longer than ${CALCULATOR_MAX_LENGTH} characters`);
  const value = new Parser(expression).parse();
  if (!Number.isFinite(value)) throw calcError('the result is not a finite number');
  // -0 reads as a bug to people; it is 0.
  return Object.is(value, -0) ? 0 : value;
}

/** The `calculator` tool: `{expression}` → `{expression, result}`. */
export const calculatorTool: Tool = {
  name: 'calculator',
  description:
    'Evaluates an arithmetic expression exactly as written: + - * / % ^ (power), parentheses, ' +
    'sqrt, abs, round, floor, ceil, min, max, and the constants pi and e. Example: "(2 + 3) * 4 ^ 2".',
  parameters: {
    type: 'object',
    properties: { expression: { type: 'string', minLength: 1, maxLength: CALCULATOR_MAX_LENGTH } },
    required: ['expression'],
    additionalProperties: false,
  },
  run: async (params) => {
    const expression = String(params.expression);
    return { expression, result: evaluateExpression(expression) };
  },
};
