"""Independent Modbus server for plugins/modbus tests (Debian python3-pymodbus 3.0).

usage: /usr/bin/python3 pymodbus_server.py tcp
       /usr/bin/python3 pymodbus_server.py rtu|ascii /dev/pts/N [baud]

Prints "READY <port or device>" on stdout once it accepts requests, then
serves until killed. Units 1 and 2 exist; any other unit id is silent.
Addresses are zero-based (zero_mode=True). Known values (see pymodbus_test.go):
  holding 0 = 215 (temperature, int16 x0.1 = 21.5)     holding 1 = -100 (int16)
  holding 10..11 = float32 25.0 (ABCD)                 holding 20..23 = uint64 0x0102030405060708
  holding 30..33 = "P100" (string, NUL padded)         holding 40 = 0b101 (bits 0 and 2)
  holding 100, 101 = reboot / factory-reset registers  holding size 1000: 5000 -> exception 02
  input 0..1 = int32 -123456 (CDAB)                    input 5 = 7
  coil 0 = on (running)                                discrete 1 = on
"""
import asyncio
import sys

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.device import ModbusDeviceIdentification
from pymodbus.framer.ascii_framer import ModbusAsciiFramer
from pymodbus.framer.rtu_framer import ModbusRtuFramer
from pymodbus.server.async_io import ModbusSerialServer, ModbusTcpServer


def unit():
    hr = [0] * 1000
    hr[0] = 215
    hr[1] = 0x10000 - 100
    hr[10:12] = [0x41C8, 0x0000]
    hr[20:24] = [0x0102, 0x0304, 0x0506, 0x0708]
    hr[30:34] = [0x5031, 0x3030, 0, 0]
    hr[40] = 0b101
    ir = [0] * 100
    ir[0:2] = [0x1DC0, 0xFFFE]
    ir[5] = 7
    co = [False] * 100
    co[0] = True
    di = [False] * 100
    di[1] = True
    return ModbusSlaveContext(
        di=ModbusSequentialDataBlock(0, di), co=ModbusSequentialDataBlock(0, co),
        hr=ModbusSequentialDataBlock(0, hr), ir=ModbusSequentialDataBlock(0, ir), zero_mode=True)


def identity():
    ident = ModbusDeviceIdentification(info_name={
        "VendorName": "Drover Test", "ProductCode": "DT-1", "MajorMinorRevision": "3.0",
        "ProductName": "Test pump", "ModelName": "DT-1000"})
    return ident


async def main():
    ctx = ModbusServerContext(slaves={1: unit(), 2: unit()}, single=False)
    if sys.argv[1] == "tcp":
        server = ModbusTcpServer(ctx, identity=identity(), address=("127.0.0.1", 0))
        task = asyncio.ensure_future(server.serve_forever())
        await server.serving
        port = server.server.sockets[0].getsockname()[1]
        print("READY", port, flush=True)
        await task
    else:
        baud = int(sys.argv[3]) if len(sys.argv) > 3 else 115200
        framer = ModbusAsciiFramer if sys.argv[1] == "ascii" else ModbusRtuFramer
        server = ModbusSerialServer(ctx, framer=framer, identity=identity(), port=sys.argv[2],
                                    baudrate=baud, bytesize=8, parity="N", stopbits=1, timeout=1)
        await server.start()
        print("READY", sys.argv[2], flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
