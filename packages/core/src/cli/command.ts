/**
 * The declarative command layer of the `vring` command: a command is its options and words
 * in one object, from which both the `node:util` `parseArgs` configuration and the `--help`
 * text are made, so the two cannot drift apart. `vring bus` (in @vring/ipc) and `vring ping`
 * and `vring echo` (here) are all declared with it, and {@link runProgram} runs them.
 *
 * @packageDocumentation
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';

interface OptionBase {
  /** One line for the option table of `--help`. */
  readonly description: string;
}

/** A flag: false unless given. @public */
export interface BooleanOption extends OptionBase {
  /** Marks a flag. */
  readonly type: 'boolean';
}

/** An option that takes a value (`--name VALUE` or `--name=VALUE`). @public */
export interface StringOption extends OptionBase {
  /** Marks an option with a string value. */
  readonly type: 'string';
  /** What the value is called in the usage, e.g. `PATH`. */
  readonly value: string;
  /** The command cannot run without it (an empty value counts as missing). */
  readonly required?: boolean;
  /** The value when the option is not given. */
  readonly default?: string;
  /** The only values accepted. */
  readonly choices?: readonly string[];
}

/** An option whose value is a whole number in `min..max`. @public */
export interface IntegerOption extends OptionBase {
  /** Marks an option with an integer value. */
  readonly type: 'integer';
  /** What the value is called in the usage, e.g. `N`. */
  readonly value: string;
  /** The command cannot run without it. */
  readonly required?: boolean;
  /** The value when the option is not given. */
  readonly default?: number;
  /** The smallest value accepted. */
  readonly min: number;
  /** Default `Number.MAX_SAFE_INTEGER`. */
  readonly max?: number;
}

/** One option of a {@link Command}. @public */
export type CommandOption = BooleanOption | StringOption | IntegerOption;

/** The options of a {@link Command}, by long name (without `--`). @public */
export type CommandOptions = Readonly<Record<string, CommandOption>>;

type Present<T extends CommandOption> = T extends { required: true } | { default: unknown }
  ? true
  : false;

type OptionValue<T extends CommandOption> = T extends BooleanOption
  ? boolean
  : T extends IntegerOption
    ? number | (Present<T> extends true ? never : undefined)
    : T extends { choices: readonly (infer C)[] }
      ? C | (Present<T> extends true ? never : undefined)
      : string | (Present<T> extends true ? never : undefined);

/** A word a {@link Command} takes after its options, e.g. `SUBJECT`. @public */
export interface CommandArgument {
  /** As the usage shows it, e.g. `SUBJECT`. */
  readonly name: string;
  /** One line for the argument table of `--help`. */
  readonly description: string;
  /** May be left out; only arguments after every required one may be. */
  readonly optional?: boolean;
}

/** What a {@link Command}'s `run` receives: every option parsed, checked and typed. @public */
export type OptionValues<O extends CommandOptions> = {
  -readonly [K in keyof O]: OptionValue<O[K]>;
};

/** A subcommand of the `vring` command. @public */
export interface Command<O extends CommandOptions = CommandOptions> {
  /** As typed after `vring`. */
  readonly name: string;
  /** One line for the command list of `vring --help`. */
  readonly summary: string;
  /** What it does, how it ends and what its exit codes mean; wrapped lines. */
  readonly description: string;
  /** Its options, by long name; `--help` is added to every command. */
  readonly options: O;
  /** The words it takes after its options, in order; none when left out. */
  readonly arguments?: readonly CommandArgument[];
  /** Shell lines shown under "example:". */
  readonly examples: readonly string[];
  /**
   * Runs the command and resolves with its exit code. `args` are its {@link Command.arguments}, as
   * many as were given (every required one is). May throw {@link UsageError} for a value
   * that only makes sense checked against another.
   */
  run(values: OptionValues<O>, args: readonly string[]): Promise<number>;
}

/**
 * Declares a command. Only here so that `O` is inferred from the literal as narrowly as
 * `required: true` and `choices` need for {@link OptionValues}.
 * @public
 */
export function defineCommand<const O extends CommandOptions>(command: Command<O>): Command<O> {
  return command;
}

/** A bad command line: {@link runProgram} prints the message and the usage, and exits 2. @public */
export class UsageError extends Error {
  /** Always `'UsageError'`. */
  override readonly name = 'UsageError';
}

/** The `vring` command as a whole. @public */
export interface Program {
  /** As typed in the shell. */
  readonly name: string;
  /** What `--version` prints. */
  readonly version: string;
  /** One line under the name in `--help`. */
  readonly summary: string;
  /** Its subcommands, in the order `--help` lists them. */
  readonly commands: readonly Command[];
  /** Shell lines shown under "example:" in the program's `--help`. */
  readonly examples: readonly string[];
}

const HELP: BooleanOption = { type: 'boolean', description: 'print this help and exit' };
const VERSION: BooleanOption = { type: 'boolean', description: 'print the version and exit' };
// Short forms only for the two flags everyone types by reflex; a command's own options are
// spelled out, so -v can never mean anything but --version.
const SHORT: Readonly<Record<string, string>> = { help: 'h', version: 'v' };

const WIDTH = 80;

function wrap(text: string, width: number, indent: number): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width - indent) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines.join(`\n${' '.repeat(indent)}`);
}

function flag(name: string, option: CommandOption): string {
  const short = SHORT[name];
  const long = `--${name}${option.type === 'boolean' ? '' : ` ${option.value}`}`;
  return short ? `-${short}, ${long}` : long;
}

function defaultOf(option: CommandOption): string {
  if (option.type === 'boolean') return 'default: off';
  if (option.required) return 'required';
  if (option.default !== undefined) return `default: ${option.default}`;
  return 'default: none';
}

function optionTable(options: CommandOptions): string {
  const rows = Object.entries(options).map(([name, option]) => {
    const choices =
      option.type === 'string' && option.choices ? `one of ${option.choices.join(', ')}` : '';
    const text = `${option.description} (${choices ? `${choices}; ` : ''}${defaultOf(option)})`;
    return [flag(name, option), name === 'help' || name === 'version' ? option.description : text];
  });
  const left = Math.max(...rows.map(([f]) => f!.length)) + 4;
  return rows.map(([f, text]) => `  ${f!.padEnd(left - 2)}${wrap(text!, WIDTH, left)}`).join('\n');
}

function synopsis(program: string, command: Command): string {
  const words = Object.entries(command.options).map(([name, option]) => {
    const word = option.type === 'boolean' ? `--${name}` : `--${name} ${option.value}`;
    return option.type !== 'boolean' && option.required ? word : `[${word}]`;
  });
  const args = (command.arguments ?? []).map((a) => (a.optional ? `[${a.name}]` : a.name));
  return [program, command.name, ...words, ...args].join(' ');
}

function argumentTable(args: readonly CommandArgument[]): string[] {
  if (args.length === 0) return [];
  const left = Math.max(...args.map((a) => a.name.length)) + 4;
  return [
    'arguments:',
    ...args.map((a) => `  ${a.name.padEnd(left - 2)}${wrap(a.description, WIDTH, left)}`),
    '',
  ];
}

/** The `--help` text of one command. @public */
export function commandUsage(program: string, command: Command): string {
  return [
    `usage: ${synopsis(program, command)}`,
    '',
    wrap(command.description, WIDTH, 0),
    '',
    ...argumentTable(command.arguments ?? []),
    'options:',
    optionTable({ ...command.options, help: HELP }),
    '',
    'example:',
    ...command.examples.map((line) => `  ${line}`),
  ].join('\n');
}

/** The `--help` text of the program. @public */
export function programUsage(program: Program): string {
  const width = Math.max(...program.commands.map((c) => c.name.length)) + 3;
  return [
    `${program.name} ${program.version}: ${program.summary}`,
    '',
    `usage: ${program.name} COMMAND [OPTIONS]`,
    `       ${program.name} COMMAND --help`,
    '',
    'commands:',
    ...program.commands.map((c) => `  ${c.name.padEnd(width)}${wrap(c.summary, WIDTH, width + 2)}`),
    '',
    'options:',
    optionTable({
      help: HELP,
      version: VERSION,
    }),
    '',
    'example:',
    ...program.examples.map((line) => `  ${line}`),
  ].join('\n');
}

function parseConfig(options: CommandOptions): NonNullable<ParseArgsConfig['options']> {
  const config: NonNullable<ParseArgsConfig['options']> = {};
  for (const [name, option] of Object.entries(options)) {
    const short = SHORT[name];
    config[name] = {
      // An integer is a string to parseArgs; convert() checks and converts it.
      type: option.type === 'boolean' ? 'boolean' : 'string',
      ...(short ? { short } : {}),
    };
  }
  return config;
}

/**
 * Parses strictly, and rewords the errors of `parseArgs` to one line each: some span three,
 * and some give advice about positional arguments that does not fit every command.
 */
function strictParse(args: string[], options: CommandOptions, allowPositionals = false) {
  try {
    return parseArgs({ args, options: parseConfig(options), strict: true, allowPositionals });
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS')) throw error;
    const message = (error as Error).message;
    const unknown = /^Unknown option '([^']*)'/.exec(message);
    if (unknown) throw new UsageError(`unknown option '${unknown[1]}'`);
    const positional = /^Unexpected argument '([^']*)'/.exec(message);
    if (positional) throw new UsageError(`unexpected argument '${positional[1]}'`);
    const missing = /^Option '([^']*?)(?: <value>)?' argument (missing|is ambiguous)/.exec(message);
    if (missing?.[2] === 'missing') throw new UsageError(`${missing[1]} needs a value`);
    if (missing) {
      const long = missing[1]!.replace(/^-\w, /, '');
      throw new UsageError(
        `${missing[1]} needs a value (for one that starts with '-', write ${long}=VALUE)`,
      );
    }
    const flag = /^Option '([^']*)' does not take an argument/.exec(message);
    if (flag) throw new UsageError(`${flag[1]} takes no value`);
    const oneLine = message.replace(/\s*\n\s*/g, ' ');
    throw new UsageError(oneLine.charAt(0).toLowerCase() + oneLine.slice(1));
  }
}

function integer(name: string, text: string, option: IntegerOption): number {
  const max = option.max ?? Number.MAX_SAFE_INTEGER;
  const n = /^-?[0-9]+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < option.min || n > max) {
    const range =
      max === Number.MAX_SAFE_INTEGER ? `${option.min} or more` : `${option.min}..${max}`;
    throw new UsageError(`--${name} must be a whole number, ${range}; got '${text}'`);
  }
  return n;
}

function convert(name: string, raw: string | boolean | undefined, option: CommandOption): unknown {
  if (option.type === 'boolean') return raw === true;
  const text = raw as string | undefined;
  if (text === undefined || text === '') {
    if (option.required) throw new UsageError(`--${name} ${option.value} is required`);
    if (text === undefined) return option.default;
  }
  if (option.type === 'integer') return integer(name, text ?? '', option);
  if (option.choices && !option.choices.includes(text!)) {
    throw new UsageError(
      `--${name} must be one of ${option.choices.join(', ')}; got '${text ?? ''}'`,
    );
  }
  return text;
}

/** A command line parsed by {@link parseCommand}. @public */
export interface ParsedCommand<O extends CommandOptions> {
  /** Every option, checked and typed. */
  values: OptionValues<O>;
  /** The command's {@link Command.arguments}, in order (after `--` too). */
  args: string[];
}

/** Checks the count of `given` words against the arguments `declared`. */
function checkArguments(declared: readonly CommandArgument[], given: string[]): void {
  const missing = declared.slice(given.length).find((a) => !a.optional);
  if (missing) throw new UsageError(`missing ${missing.name}`);
  const extra = given[declared.length];
  if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`);
}

/**
 * Parses a command's arguments. Returns `'help'` when `-h`/`--help` is among the options
 * (before `--`): help wins over any other mistake on the same line, as the user asked for it.
 * @throws UsageError for an unknown option, a missing or bad value, a missing required
 * option, or too few or too many arguments.
 * @public
 */
export function parseCommand<O extends CommandOptions>(
  command: Command<O>,
  args: string[],
): ParsedCommand<O> | 'help' {
  const options = { ...command.options, help: HELP };
  // A lenient pass finds --help even on a line that the strict pass would reject.
  const { tokens } = parseArgs({
    args,
    options: parseConfig(options),
    strict: false,
    tokens: true,
  });
  if (tokens.some((t) => t.kind === 'option' && t.name === 'help')) return 'help';
  const { values, positionals } = strictParse(args, options, command.arguments !== undefined);
  const parsed: Record<string, unknown> = {};
  for (const [name, option] of Object.entries(command.options)) {
    // Never an array: no option is `multiple`.
    parsed[name] = convert(name, values[name] as string | boolean | undefined, option);
  }
  checkArguments(command.arguments ?? [], positionals);
  return { values: parsed as OptionValues<O>, args: positionals };
}

/** Where {@link runProgram} prints; the defaults are the process's own streams. @public */
export interface ProgramOutput {
  /** Help and version text (stdout). */
  out(text: string): void;
  /** Errors and the usage after a bad command line (stderr). */
  err(text: string): void;
}

const processOutput: ProgramOutput = {
  out: (text) => console.log(text),
  err: (text) => console.error(text),
};

function isUsageError(error: unknown): boolean {
  // `ERR_VRING_INVALID_ARGUMENT` is what vring's own constructors throw for a value that
  // came straight from the command line (a socket path too long, say). Checked by code, not
  // class: this bundle has a copy of VringError of its own.
  return (
    error instanceof UsageError ||
    (error as { code?: unknown } | null)?.code === 'ERR_VRING_INVALID_ARGUMENT'
  );
}

/**
 * Runs `program` on the arguments after its name and resolves with the exit code: 0 after
 * `--help` or `--version` (printed to stdout), 2 with a one-line error and the usage on
 * stderr for a bad command line, otherwise the command's own code (1 for an error it
 * throws, printed on one line).
 * @public
 */
export async function runProgram(
  program: Program,
  argv: string[],
  output: ProgramOutput = processOutput,
): Promise<number> {
  // The command is the first argument that is not an option: only the program's own
  // flags (none of which takes a value) may stand before it.
  const at = argv.findIndex((arg) => !arg.startsWith('-'));
  const own = at === -1 ? argv : argv.slice(0, at);
  const name = at === -1 ? undefined : argv[at];
  const command = program.commands.find((c) => c.name === name);
  let usage = programUsage(program);
  let prefix = program.name;
  try {
    const { values } = strictParse(own, { help: HELP, version: VERSION });
    if (values.help) {
      output.out(usage);
      return 0;
    }
    if (values.version) {
      output.out(program.version);
      return 0;
    }
    if (name === undefined) throw new UsageError('missing command');
    if (!command) throw new UsageError(`unknown command '${name}'`);
    usage = commandUsage(program.name, command);
    prefix = `${program.name} ${command.name}`;
    const parsed = parseCommand(command, argv.slice(at + 1));
    if (parsed === 'help') {
      output.out(usage);
      return 0;
    }
    return await command.run(parsed.values, parsed.args);
  } catch (error) {
    if (isUsageError(error)) {
      output.err(`${prefix}: ${(error as Error).message}\n\n${usage}`);
      return 2;
    }
    const code = (error as { code?: unknown } | null)?.code;
    const suffix = typeof code === 'string' ? ` [${code}]` : '';
    output.err(`${prefix}: ${error instanceof Error ? error.message : String(error)}${suffix}`);
    return 1;
  }
}
