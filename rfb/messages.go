package rfb

import "encoding/binary"

// Client-to-server message types (RFC 6143 7.5 and the registry of the community protocol
// document, rfbproto).
const (
	MsgSetPixelFormat           = 0
	MsgSetEncodings             = 2
	MsgFramebufferUpdateRequest = 3
	MsgKeyEvent                 = 4
	MsgPointerEvent             = 5
	MsgClientCutText            = 6
	MsgEnableContinuousUpdates  = 150
	MsgClientFence              = 248
	MsgXvp                      = 250
	MsgSetDesktopSize           = 251
	MsgGII                      = 253
	MsgQEMU                     = 255
)

// Server-to-client message types (RFC 6143 7.6).
const (
	MsgFramebufferUpdate   = 0
	MsgSetColourMapEntries = 1
	MsgBell                = 2
	MsgServerCutText       = 3
)

// Encodings and pseudo-encodings this package refers to (SetEncodings values).
const (
	EncodingRaw                  int32 = 0
	EncodingCopyRect             int32 = 1
	EncodingDesktopSize          int32 = -223
	EncodingQEMUExtendedKeyEvent int32 = -258
	EncodingExtendedDesktopSize  int32 = -308
	EncodingXvp                  int32 = -309
	EncodingFence                int32 = -312
	EncodingContinuousUpdates    int32 = -313
	// EncodingExtendedMouseButtons lets a client send 7-byte PointerEvents: the mask's top bit
	// marks one more byte of buttons.
	EncodingExtendedMouseButtons int32 = -316
	EncodingExtendedClipboard    int32 = -1063131698 // 0xC0A1E5CE
)

// QEMU client message sub-types and audio operations.
const (
	QEMUExtendedKeyEvent = 0
	QEMUAudio            = 1

	QEMUAudioEnable    = 0
	QEMUAudioDisable   = 1
	QEMUAudioSetFormat = 2
)

// gii sub-types; the top bit of the endian-and-sub-type byte says the message is big-endian.
const (
	GIIEvents        = 0
	GIIVersion       = 1
	GIIDeviceCreate  = 2
	GIIDeviceDestroy = 3
	GIIBigEndian     = 0x80
)

// AppendSetPixelFormat appends SetPixelFormat.
func AppendSetPixelFormat(dst []byte, pf PixelFormat) []byte {
	return pf.Append(append(dst, MsgSetPixelFormat, 0, 0, 0))
}

// AppendSetEncodings appends SetEncodings; more than 65535 encodings are cut.
func AppendSetEncodings(dst []byte, encodings ...int32) []byte {
	encodings = encodings[:min(len(encodings), 0xffff)]
	dst = append(dst, MsgSetEncodings, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(encodings)))
	for _, e := range encodings {
		dst = binary.BigEndian.AppendUint32(dst, uint32(e))
	}
	return dst
}

// AppendFramebufferUpdateRequest appends FramebufferUpdateRequest.
func AppendFramebufferUpdateRequest(dst []byte, incremental bool, x, y, w, h uint16) []byte {
	dst = append(dst, MsgFramebufferUpdateRequest, boolByte(incremental))
	return appendRect(dst, x, y, w, h)
}

func appendRect(dst []byte, x, y, w, h uint16) []byte {
	dst = binary.BigEndian.AppendUint16(dst, x)
	dst = binary.BigEndian.AppendUint16(dst, y)
	dst = binary.BigEndian.AppendUint16(dst, w)
	return binary.BigEndian.AppendUint16(dst, h)
}

// AppendKeyEvent appends KeyEvent for an X11 keysym.
func AppendKeyEvent(dst []byte, down bool, keysym uint32) []byte {
	dst = append(dst, MsgKeyEvent, boolByte(down), 0, 0)
	return binary.BigEndian.AppendUint32(dst, keysym)
}

// AppendPointerEvent appends the 6-byte PointerEvent with the mask as given. Once
// ExtendedMouseButtons is in use the mask's top bit marks the 7-byte form instead of button 8,
// so a client then sends buttons below 0x80 here (noVNC clears the bit) and uses
// AppendExtendedPointerEvent for the others.
func AppendPointerEvent(dst []byte, buttons uint8, x, y uint16) []byte {
	dst = append(dst, MsgPointerEvent, buttons)
	dst = binary.BigEndian.AppendUint16(dst, x)
	return binary.BigEndian.AppendUint16(dst, y)
}

// AppendExtendedPointerEvent appends the 7-byte PointerEvent of ExtendedMouseButtons: buttons 1-7
// in the first mask byte with its top bit set, buttons 8-9 in the extra byte.
func AppendExtendedPointerEvent(dst []byte, buttons uint16, x, y uint16) []byte {
	dst = append(dst, MsgPointerEvent, byte(buttons&0x7f)|0x80)
	dst = binary.BigEndian.AppendUint16(dst, x)
	dst = binary.BigEndian.AppendUint16(dst, y)
	return append(dst, byte(buttons>>7))
}

// AppendClientCutText appends ClientCutText with text (Latin-1 per the RFC, sent as given).
func AppendClientCutText(dst []byte, text []byte) []byte {
	dst = append(dst, MsgClientCutText, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(text)))
	return append(dst, text...)
}

// AppendExtendedCutText appends the extended-clipboard form of ClientCutText: the negated
// length, then data (u32 flags and the action's payload).
func AppendExtendedCutText(dst []byte, data []byte) []byte {
	dst = append(dst, MsgClientCutText, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(-int32(len(data))))
	return append(dst, data...)
}

// AppendEnableContinuousUpdates appends EnableContinuousUpdates.
func AppendEnableContinuousUpdates(dst []byte, enable bool, x, y, w, h uint16) []byte {
	return appendRect(append(dst, MsgEnableContinuousUpdates, boolByte(enable)), x, y, w, h)
}

// AppendFence appends a client Fence; the payload is cut to 64 bytes, the protocol's limit.
func AppendFence(dst []byte, flags uint32, payload []byte) []byte {
	payload = payload[:min(len(payload), 64)]
	dst = append(dst, MsgClientFence, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, flags)
	return append(append(dst, byte(len(payload))), payload...)
}

// AppendXvp appends an xvp client message (version, operation: shutdown, reboot, reset).
func AppendXvp(dst []byte, version, op uint8) []byte {
	return append(dst, MsgXvp, 0, version, op)
}

// Screen is one screen of SetDesktopSize.
type Screen struct {
	ID         uint32
	X, Y, W, H uint16
	Flags      uint32
}

// AppendSetDesktopSize appends SetDesktopSize; more than 255 screens are cut.
func AppendSetDesktopSize(dst []byte, w, h uint16, screens ...Screen) []byte {
	screens = screens[:min(len(screens), 255)]
	dst = append(dst, MsgSetDesktopSize, 0)
	dst = binary.BigEndian.AppendUint16(dst, w)
	dst = binary.BigEndian.AppendUint16(dst, h)
	dst = append(dst, byte(len(screens)), 0)
	for _, s := range screens {
		dst = binary.BigEndian.AppendUint32(dst, s.ID)
		dst = appendRect(dst, s.X, s.Y, s.W, s.H)
		dst = binary.BigEndian.AppendUint32(dst, s.Flags)
	}
	return dst
}

// AppendGII appends a gii client message of sub-type sub with body; the length field is written
// in the byte order the message announces. A body over 65535 bytes is cut.
func AppendGII(dst []byte, bigEndian bool, sub uint8, body []byte) []byte {
	body = body[:min(len(body), 0xffff)]
	es := sub &^ GIIBigEndian
	if bigEndian {
		es |= GIIBigEndian
		dst = binary.BigEndian.AppendUint16(append(dst, MsgGII, es), uint16(len(body)))
	} else {
		dst = binary.LittleEndian.AppendUint16(append(dst, MsgGII, es), uint16(len(body)))
	}
	return append(dst, body...)
}

// AppendQEMUKeyEvent appends QEMU's extended key event: keysym and XT scan code.
func AppendQEMUKeyEvent(dst []byte, down bool, keysym, keycode uint32) []byte {
	dst = append(dst, MsgQEMU, QEMUExtendedKeyEvent, 0, boolByte(down))
	dst = binary.BigEndian.AppendUint32(dst, keysym)
	return binary.BigEndian.AppendUint32(dst, keycode)
}

// AppendQEMUAudio appends a QEMU audio message with operation QEMUAudioEnable or
// QEMUAudioDisable.
func AppendQEMUAudio(dst []byte, op uint16) []byte {
	return binary.BigEndian.AppendUint16(append(dst, MsgQEMU, QEMUAudio), op)
}

// AppendQEMUAudioFormat appends QEMU's audio set-format message.
func AppendQEMUAudioFormat(dst []byte, sampleFormat, channels uint8, frequency uint32) []byte {
	dst = AppendQEMUAudio(dst, QEMUAudioSetFormat)
	return binary.BigEndian.AppendUint32(append(dst, sampleFormat, channels), frequency)
}
