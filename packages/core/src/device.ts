/** Devices as 'cpu' or 'cuda:N', with DLPack device codes (kDLCPU = 1, kDLCUDA = 2). */
export type DeviceType = 'cpu' | 'cuda';
/** A device's canonical name, as `Device.toString()` gives it: 'cpu', 'cuda:0', 'cuda:1', ... */
export type DeviceName = 'cpu' | `cuda:${number}`;
/**
 * What a device argument takes (`to`, factories' `device`): a name, 'cuda' for the
 * current one (cuda:0), or a Device. A literal type, so `to('cdua:0')` fails to
 * compile; a name read at run time (from the environment) goes through `Device.parse`.
 */
export type DeviceLike = DeviceName | 'cuda' | Device;

export const DLPACK_DEVICE_CODES: Readonly<Record<DeviceType, number>> = { cpu: 1, cuda: 2 };

export class Device {
  private constructor(readonly type: DeviceType, readonly index: number) {}

  static readonly cpu = new Device('cpu', 0);

  /** Parses 'cpu', 'cuda' (= 'cuda:0') or 'cuda:N'; any string, for names read at run time (an error names a bad one). */
  static parse(name: string | Device): Device {
    if (name instanceof Device) return name;
    if (name === 'cpu') return Device.cpu;
    const m = /^cuda(?::(\d+))?$/.exec(name);
    if (!m) throw new Error(`unknown device '${name}': expected 'cpu', 'cuda' or 'cuda:N'`);
    return new Device('cuda', m[1] === undefined ? 0 : Number(m[1]));
  }

  get dlpackCode(): number {
    return DLPACK_DEVICE_CODES[this.type];
  }

  equals(other: Device): boolean {
    return this.type === other.type && this.index === other.index;
  }

  toString(): DeviceName {
    return this.type === 'cpu' ? 'cpu' : `cuda:${this.index}`;
  }
}
