/**
 * The time-series chart (uPlot, bundled). Batch and speed parts of a bucket
 * are stacked bars when the API sends them; otherwise the plot is shaded after
 * the cutoff, where buckets are (mostly) filled by speed deltas. The cutoff
 * itself is a DOM element over the plot, so it can be seen, styled and tested.
 */
import uPlot from 'uplot';
import { axisTimes, clock, num, utc } from './format.ts';
import type { ChartModel } from './model.ts';

export const COLORS = {
  batch: '#2f6fd6',
  speed: '#f08c00',
  cutoff: '#c2255c',
  groups: ['#2f6fd6', '#f08c00', '#2b8a3e', '#ae3ec9', '#e03131', '#1098ad', '#5c940d', '#862e9c'],
} as const;

const HEIGHT = 300;
const utcDate = (ts: number) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC');

export class Chart {
  private plot: uPlot | undefined;
  private shape = '';
  private model: ChartModel | undefined;
  private readonly resize = new ResizeObserver(() => this.plot?.setSize({ width: this.width(), height: HEIGHT }));

  constructor(private readonly host: HTMLElement) {
    this.resize.observe(host);
  }

  private width(): number {
    return Math.max(320, this.host.clientWidth);
  }

  /** Draws a model; keeps the uPlot instance when only the data changed (live refresh). */
  render(model: ChartModel): void {
    this.model = model;
    const shape = JSON.stringify([model.split, model.series.map((s) => [s.label, s.kind]), model.xs.length > 0]);
    const data = this.data(model);
    if (this.plot && shape === this.shape) {
      this.plot.setData(data);
    } else {
      this.plot?.destroy();
      this.plot = new uPlot(this.options(model), data, this.host);
      this.shape = shape;
    }
    this.placeCutoff();
  }

  destroy(): void {
    this.resize.disconnect();
    this.plot?.destroy();
    this.plot = undefined;
    this.shape = '';
  }

  private data(model: ChartModel): uPlot.AlignedData {
    if (model.split) {
      // Bars of batch + speed in the speed colour, then batch bars over them: a stacked bar.
      const [batch, speed] = model.series;
      const top = batch!.values.map((b, i) => (b ?? 0) + (speed!.values[i] ?? 0));
      return [model.xs, top, batch!.values];
    }
    return [model.xs, ...model.series.map((s) => s.values)];
  }

  private options(model: ChartModel): uPlot.Options {
    // align 1: a bar starts at its bucket's start and covers the bucket, so the cutoff line reads against it.
    const bars = uPlot.paths.bars!({ size: [0.8, 40], gap: 1, align: 1 });
    const series: uPlot.Series[] = [{ label: 'bucket (UTC)', value: (_u, v) => (v == null ? '–' : utc(v * 1000)) }];
    if (model.split) {
      const speed = model.series[1]!;
      const batch = model.series[0]!;
      series.push(
        {
          label: 'speed deltas',
          stroke: COLORS.speed,
          fill: `${COLORS.speed}cc`,
          paths: bars,
          points: { show: false },
          value: (_u, _v, _s, i) => num(i == null ? null : speed.values[i]),
        },
        {
          label: 'batch view',
          stroke: COLORS.batch,
          fill: `${COLORS.batch}dd`,
          paths: bars,
          points: { show: false },
          value: (_u, _v, _s, i) => num(i == null ? null : batch.values[i]),
        },
      );
    } else if (model.series.length === 1 && model.series[0]!.kind === 'total') {
      const asBars = model.totals.all !== null;
      series.push({
        label: model.metric,
        stroke: COLORS.batch,
        fill: asBars ? `${COLORS.batch}bb` : undefined,
        width: asBars ? 1 : 2,
        spanGaps: false,
        ...(asBars ? { paths: bars, points: { show: false } } : {}),
        value: (_u, v) => num(v),
      });
    } else {
      model.series.forEach((s, i) => {
        series.push({
          label: s.label,
          stroke: COLORS.groups[i % COLORS.groups.length],
          width: 2,
          spanGaps: false,
          value: (_u, v) => num(v),
        });
      });
    }
    return {
      width: this.width(),
      height: HEIGHT,
      tzDate: utcDate,
      series,
      scales: {
        x: { time: true, range: () => [...(this.model?.xRange ?? model.xRange)] as [number, number] },
        y: { range: (_u, min, max) => [Math.min(0, min ?? 0), max == null || max <= 0 ? 1 : max * 1.1] },
      },
      axes: [
        { stroke: '#555', grid: { stroke: '#eee' }, values: (_u, ticks, _axis, _space, incr) => axisTimes(ticks, incr) },
        { stroke: '#555', grid: { stroke: '#eee' }, size: 60, values: (_u, ticks) => ticks.map((t) => num(t)) },
      ],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      hooks: { draw: [() => this.placeCutoff()], setSize: [() => this.placeCutoff()] },
    };
  }

  /**
   * Positions the cutoff line and the "speed layer" shade over the plot: the
   * batch view holds arrivals before the cutoff, the speed deltas the rest.
   */
  private placeCutoff(): void {
    const u = this.plot;
    const model = this.model;
    if (!u || !model) return;
    let line = u.over.querySelector<HTMLDivElement>('.cutoff-line');
    let shade = u.over.querySelector<HTMLDivElement>('.speed-shade');
    if (!line) {
      line = document.createElement('div');
      line.className = 'cutoff-line';
      line.innerHTML = '<span class="cutoff-label"></span>';
      shade = document.createElement('div');
      shade.className = 'speed-shade';
      u.over.append(shade, line);
    }
    const width = u.over.clientWidth;
    const cutoff = model.cutoff;
    // With the parts known, bars say it all; shade only when the split is unknown.
    const shadeOn = !model.split;
    if (cutoff === null) {
      line.hidden = true;
      shade!.hidden = !shadeOn;
      shade!.style.left = '0px';
      shade!.style.width = `${width}px`;
      this.host.dataset.cutoff = '';
      this.host.dataset.cutoffX = '';
      return;
    }
    const x = u.valToPos(cutoff / 1000, 'x');
    const inside = x >= 0 && x <= width;
    line.hidden = !inside;
    line.style.left = `${Math.round(x)}px`;
    const label = line.querySelector<HTMLElement>('.cutoff-label')!;
    label.textContent = `cutoff ${clock(cutoff)}`;
    // Near the right edge the label goes on the line's left, inside the plot.
    label.classList.toggle('flip', x > width - 110);
    const left = Math.min(Math.max(x, 0), width);
    shade!.hidden = !shadeOn || left >= width;
    shade!.style.left = `${left}px`;
    shade!.style.width = `${width - left}px`;
    this.host.dataset.cutoff = new Date(cutoff).toISOString();
    this.host.dataset.cutoffX = inside ? String(Math.round(x)) : '';
  }
}
