/** A wakeable wait: `wait(ms)` resolves on `notify()` or after `ms` (and then forgets the waiter). */
export class Signal {
  private readonly waiters = new Set<() => void>();
  wait(ms?: number): Promise<void> {
    return new Promise((res) => {
      let t: NodeJS.Timeout | undefined;
      const done = () => {
        clearTimeout(t);
        this.waiters.delete(done);
        res();
      };
      this.waiters.add(done);
      if (ms !== undefined) t = setTimeout(done, Math.max(0, ms));
    });
  }
  notify(): void {
    for (const f of [...this.waiters]) f();
  }
}
