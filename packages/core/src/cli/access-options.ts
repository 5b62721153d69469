/**
 * The command-line options of a listening command (`vring bus`, `vring echo`) that say who
 * may attach: `--socket-mode`, `--allow-uid`, `--allow-gid`, declared once here and turned
 * into {@link ListenAccessOptions}.
 *
 * @packageDocumentation
 */
import type { ListenAccessOptions } from '../peer-access.js';
import { UsageError } from './command.js';

/** The socket mode when `--socket-mode` is not given, as the help shows it. */
const DEFAULT_MODE_TEXT = '0600';

/**
 * Options a listening command adds to its own: for `vring bus` in `@vring/ipc`, not an API.
 * @internal
 */
export const LISTEN_ACCESS_OPTIONS = {
  'socket-mode': {
    type: 'string',
    value: 'MODE',
    default: DEFAULT_MODE_TEXT,
    description:
      'permission bits of the socket file, in octal: 0660 lets the file group connect, 0666 ' +
      'everyone who can reach the directory (the uid/gid check below still applies)',
  },
  'allow-uid': {
    type: 'string',
    value: 'UID[,UID...]',
    description:
      "uids admitted besides this process's own and root; every other peer is refused " +
      'on its SO_PEERCRED credentials, logged and counted',
  },
  'allow-gid': {
    type: 'string',
    value: 'GID[,GID...]',
    description: 'gids admitted: a peer whose effective or supplementary group is listed',
  },
} as const;

function ids(flag: string, text: string | undefined): number[] | undefined {
  if (text === undefined || text === '') return undefined;
  return text.split(',').map((part) => {
    const id = /^[0-9]+$/.test(part.trim()) ? Number(part.trim()) : Number.NaN;
    if (!Number.isSafeInteger(id) || id > 0xffff_ffff) {
      throw new UsageError(`--${flag} takes numeric ids separated by commas; got '${text}'`);
    }
    return id;
  });
}

/**
 * The {@link ListenAccessOptions} of parsed `values`. An abstract `socket` (`@name`) has no
 * file, so the default mode is not passed for it (an explicit other mode is an error there).
 * @throws UsageError for a mode that is not octal permission bits or a bad id list.
 * @public
 */
export function listenAccessFrom(
  socket: string,
  values: {
    'socket-mode': string;
    'allow-uid': string | undefined;
    'allow-gid': string | undefined;
  },
): ListenAccessOptions {
  const modeText = values['socket-mode'];
  if (!/^0?[0-7]{1,3}$/.test(modeText)) {
    throw new UsageError(
      `--socket-mode takes octal permission bits such as 0660; got '${modeText}'`,
    );
  }
  const abstract = socket.startsWith('@');
  const options: ListenAccessOptions = {};
  if (!abstract || modeText !== DEFAULT_MODE_TEXT)
    options.socketMode = Number.parseInt(modeText, 8);
  const allowUids = ids('allow-uid', values['allow-uid']);
  const allowGids = ids('allow-gid', values['allow-gid']);
  if (allowUids) options.allowUids = allowUids;
  if (allowGids) options.allowGids = allowGids;
  return options;
}
