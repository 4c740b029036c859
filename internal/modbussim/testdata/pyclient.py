"""Independent Modbus client for the simulator's cross-check tests.

usage: /usr/bin/python3 pyclient.py tcp PORT UNIT | rtu PATH UNIT | ascii PATH UNIT
Prints one JSON object with what pymodbus decoded.
"""
import json
import sys

from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.framer.ascii_framer import ModbusAsciiFramer
from pymodbus.framer.rtu_framer import ModbusRtuFramer
from pymodbus.mei_message import ReadDeviceInformationRequest

mode, target, unit = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "tcp":
    c = ModbusTcpClient("127.0.0.1", port=int(target), timeout=3, retries=1)
else:
    framer = ModbusAsciiFramer if mode == "ascii" else ModbusRtuFramer
    c = ModbusSerialClient(port=target, framer=framer, baudrate=19200, timeout=1, retries=1)
if not c.connect():
    sys.exit("connect failed")


def regs(r):
    return r.registers if hasattr(r, "registers") else {"error": str(r)}


def exc(r):
    return getattr(r, "exception_code", None)


def ident(code):
    r = c.execute(ReadDeviceInformationRequest(read_code=code, object_id=0, unit=unit))
    info = getattr(r, "information", None)
    if info is None:
        return {"error": str(r)}
    return {str(k): v.decode() for k, v in info.items()}


out = {
    "holding": regs(c.read_holding_registers(0, 12, slave=unit)),
    "input": regs(c.read_input_registers(10, 4, slave=unit)),
    "coils": c.read_coils(0, 1, slave=unit).bits[:1],
    "id_basic": ident(1),
    "id_regular": ident(2),
    "write": not c.write_registers(10, [0x41C8, 0], slave=unit).isError(),
    "write_coil": not c.write_coil(0, False, slave=unit).isError(),
    "setpoint_after": regs(c.read_holding_registers(10, 2, slave=unit)),
    "coils_after": c.read_coils(0, 1, slave=unit).bits[:1],
    "exc_unmapped": exc(c.read_holding_registers(500, 1, slave=unit)),
    "exc_quantity": exc(c.read_holding_registers(0, 126, slave=unit)),
}
if mode == "tcp":  # a gateway answers 0x0B for a unit it cannot reach
    out["exc_unknown_unit"] = exc(c.read_holding_registers(0, 1, slave=99))
c.close()
print(json.dumps(out))
