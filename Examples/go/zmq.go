package main

// The few libzmq calls this consumer needs, bound through cgo. A real program would take a
// maintained Go binding (github.com/pebbe/zmq4, or the pure-Go github.com/go-zeromq/zmq4);
// this example binds libzmq itself so that it builds with nothing but Go and libzmq3-dev.

/*
#cgo pkg-config: libzmq
#include <errno.h>
#include <stdlib.h>
#include <zmq.h>
*/
import "C"

import (
	"errors"
	"unsafe"
)

const (
	sub              = C.ZMQ_SUB
	req              = C.ZMQ_REQ
	rcvTimeoutOption = C.ZMQ_RCVTIMEO
	lingerOption     = C.ZMQ_LINGER
)

type context struct{ handle unsafe.Pointer }

type socket struct{ handle unsafe.Pointer }

func newContext() *context { return &context{C.zmq_ctx_new()} }

func lastError() error { return errors.New(C.GoString(C.zmq_strerror(C.zmq_errno()))) }

// interrupted tells whether the last call failed only because a signal arrived. The Go
// runtime signals its threads (goroutine preemption), so a blocking libzmq call can return
// EINTR at any time; it is retried, as Go's own bindings do.
func interrupted() bool { return C.zmq_errno() == C.EINTR }

func (c *context) socket(kind C.int) (*socket, error) {
	handle := C.zmq_socket(c.handle, kind)
	if handle == nil {
		return nil, lastError()
	}
	return &socket{handle}, nil
}

func (s *socket) connect(endpoint string) error {
	text := C.CString(endpoint)
	defer C.free(unsafe.Pointer(text))
	if C.zmq_connect(s.handle, text) != 0 {
		return lastError()
	}
	return nil
}

func (s *socket) subscribe(prefix string) error {
	text := C.CString(prefix)
	defer C.free(unsafe.Pointer(text))
	if C.zmq_setsockopt(s.handle, C.ZMQ_SUBSCRIBE, unsafe.Pointer(text), C.size_t(len(prefix))) != 0 {
		return lastError()
	}
	return nil
}

func (s *socket) setInt(option C.int, value int) error {
	v := C.int(value)
	if C.zmq_setsockopt(s.handle, option, unsafe.Pointer(&v), C.size_t(unsafe.Sizeof(v))) != 0 {
		return lastError()
	}
	return nil
}

func (s *socket) send(frame []byte) error {
	var data unsafe.Pointer
	if len(frame) > 0 {
		data = unsafe.Pointer(&frame[0])
	}
	for C.zmq_send(s.handle, data, C.size_t(len(frame)), 0) < 0 {
		if !interrupted() {
			return lastError()
		}
	}
	return nil
}

// receive returns the frames of one multipart message.
func (s *socket) receive() ([][]byte, error) {
	var frames [][]byte
	for {
		var message C.zmq_msg_t
		C.zmq_msg_init(&message)
		for C.zmq_msg_recv(&message, s.handle, 0) < 0 {
			if !interrupted() {
				C.zmq_msg_close(&message)
				return nil, lastError()
			}
		}
		frames = append(frames, C.GoBytes(C.zmq_msg_data(&message), C.int(C.zmq_msg_size(&message))))
		more := C.zmq_msg_more(&message)
		C.zmq_msg_close(&message)
		if more == 0 {
			return frames, nil
		}
	}
}

func (s *socket) close() { C.zmq_close(s.handle) }
