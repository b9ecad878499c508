/**
 * `sentinel completion bash|zsh`: completion scripts generated from the command table, so a new
 * command or flag completes without anyone editing a script.
 */
import type { Command } from 'commander';

interface Entry {
  name: string;
  description: string;
  flags: string[];
}

function entries(program: Command): Entry[] {
  const list = program.commands.map((command) => ({
    name: command.name(),
    description: command.description().split('\n')[0] ?? '',
    flags: [...command.options.flatMap((o) => [o.short, o.long].filter((f): f is string => f !== undefined)), '--help'],
  }));
  return [...list, { name: 'api', description: 'Start the API server', flags: ['--help'] }];
}

export function bashCompletion(program: Command): string {
  const list = entries(program);
  const global = ['--server', '--token', '--help'];
  const cases = list.map((e) => `    ${e.name}) opts="${[...e.flags, ...global].join(' ')}" ;;`).join('\n');
  return `# sentinel bash completion: source <(sentinel completion bash)
_sentinel() {
  local cur=\${COMP_WORDS[COMP_CWORD]}
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "${list.map((e) => e.name).join(' ')} help --help --version" -- "$cur"))
    return
  fi
  local opts=""
  case "\${COMP_WORDS[1]}" in
${cases}
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o default -F _sentinel sentinel
`;
}

export function zshCompletion(program: Command): string {
  const list = entries(program);
  const quote = (text: string): string => text.replace(/'/g, "'\\''").replace(/:/g, '\\:');
  const commands = list.map((e) => `    '${e.name}:${quote(e.description)}'`).join('\n');
  const cases = list.map((e) => `      ${e.name}) compadd -- ${[...e.flags, '--server', '--token'].join(' ')} ;;`).join('\n');
  return `#compdef sentinel
# sentinel zsh completion: source <(sentinel completion zsh)
_sentinel() {
  local -a commands
  commands=(
${commands}
  )
  if (( CURRENT == 2 )); then
    _describe 'command' commands
  else
    case "$words[2]" in
${cases}
    esac
    _files
  fi
}
compdef _sentinel sentinel
`;
}
