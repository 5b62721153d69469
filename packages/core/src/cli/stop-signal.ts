/**
 * Resolves with the first SIGINT or SIGTERM the process receives, after which both get
 * their default effect back. The handlers are in place when this returns: call it before
 * telling anyone that Ctrl-C or SIGTERM stops you, or a signal sent on reading that line
 * kills the process before it can report and clean up.
 * @public
 */
export function stopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (name: NodeJS.Signals) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve(name);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
