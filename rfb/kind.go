package rfb

import "strconv"

// Kind classifies a client-to-server message, finer than its type byte where a policy needs it
// (QEMU key events and QEMU audio share type 255; gii input events and gii housekeeping share
// type 253).
type Kind uint8

// Kinds of client messages. KindUnknown is the zero value: no message, or one whose sub-type has
// not arrived yet.
const (
	KindUnknown Kind = iota
	KindSetPixelFormat
	KindSetEncodings
	KindFramebufferUpdateRequest
	KindKeyEvent
	KindPointerEvent
	KindClientCutText
	KindEnableContinuousUpdates
	KindFence
	KindXvp
	KindSetDesktopSize
	// KindGIIEvents is gii's event injection (sub-type 0): keys, buttons and valuators.
	KindGIIEvents
	// KindGII is every other gii message: version, device creation and destruction.
	KindGII
	KindQEMUKeyEvent
	KindQEMUAudio
	numKinds
)

// A KindSet has a bit for every Kind: this fails to compile once there are more than 32.
const _ = uint32(1 << (numKinds - 1))

func (k Kind) String() string {
	switch k {
	case KindUnknown:
		return "Unknown"
	case KindSetPixelFormat:
		return "SetPixelFormat"
	case KindSetEncodings:
		return "SetEncodings"
	case KindFramebufferUpdateRequest:
		return "FramebufferUpdateRequest"
	case KindKeyEvent:
		return "KeyEvent"
	case KindPointerEvent:
		return "PointerEvent"
	case KindClientCutText:
		return "ClientCutText"
	case KindEnableContinuousUpdates:
		return "EnableContinuousUpdates"
	case KindFence:
		return "Fence"
	case KindXvp:
		return "Xvp"
	case KindSetDesktopSize:
		return "SetDesktopSize"
	case KindGIIEvents:
		return "GIIEvents"
	case KindGII:
		return "GII"
	case KindQEMUKeyEvent:
		return "QEMUKeyEvent"
	case KindQEMUAudio:
		return "QEMUAudio"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// KindSet is a set of Kinds, e.g. the messages a filter drops.
type KindSet uint32

// KindsOf is the set holding kinds.
func KindsOf(kinds ...Kind) KindSet {
	var s KindSet
	for _, k := range kinds {
		s |= 1 << k
	}
	return s
}

// Has reports whether k is in s.
func (s KindSet) Has(k Kind) bool { return s&(1<<k) != 0 }

// ViewOnly is what a view-only session drops: every message that acts on the VM rather than on
// what the client is shown. That is keys and pointer (also as QEMU key events and gii input
// events: the same input by other doors), the clipboard, resizing the desktop and xvp's
// shutdown/reboot/reset. The rest (pixel format, encodings, update requests, continuous
// updates, fences, QEMU audio, gii housekeeping) only shapes the picture and passes.
const ViewOnly KindSet = 1<<KindKeyEvent | 1<<KindPointerEvent | 1<<KindClientCutText |
	1<<KindSetDesktopSize | 1<<KindXvp | 1<<KindQEMUKeyEvent | 1<<KindGIIEvents

// InputEvents is the set an audit log of user input observes: keys and pointer.
const InputEvents KindSet = 1<<KindKeyEvent | 1<<KindPointerEvent | 1<<KindQEMUKeyEvent
