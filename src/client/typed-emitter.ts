/** A minimal typed event emitter: `on('complete', () => ...)` with the argument types checked. */
export class TypedEmitter<Events extends { [K in keyof Events]: (...args: never[]) => void }> {
  private readonly handlers = new Map<keyof Events, Set<(...args: never[]) => void>>();

  on<K extends keyof Events>(event: K, fn: Events[K]): this {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(fn);
    return this;
  }

  once<K extends keyof Events>(event: K, fn: Events[K]): this {
    const wrap = ((...args: Parameters<Events[K]>) => {
      this.off(event, wrap as Events[K]);
      (fn as (...a: Parameters<Events[K]>) => void)(...args);
    }) as unknown as Events[K];
    return this.on(event, wrap);
  }

  off<K extends keyof Events>(event: K, fn: Events[K]): this {
    this.handlers.get(event)?.delete(fn);
    return this;
  }

  protected emit<K extends keyof Events>(event: K, ...args: Parameters<Events[K]>): void {
    const set = this.handlers.get(event);
    if (!set) return;
    for (const fn of [...set]) (fn as (...a: Parameters<Events[K]>) => void)(...args);
  }

  listenerCount(event: keyof Events): number {
    return this.handlers.get(event)?.size ?? 0;
  }
}
