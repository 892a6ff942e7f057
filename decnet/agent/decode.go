package agent

import (
	"errors"

	"github.com/decnet-swarm/sdk/decnet"
)

// The request decoders. Each decodes strictly (unknown fields, malformed JSON
// and trailing data are rejected) and validates; every error wraps
// decnet.ErrInvalid. They are pure, so they are fuzzed directly.

// decodeDeploy decodes a POST /deploy body. The worker's own network replaces
// the one sent (the master never needs to know a worker's NIC) and an empty
// mode means swarm; the config is then validated against cat, which also
// rejects a fixed IP outside the worker's subnet.
func decodeDeploy(data []byte, network decnet.Network, cat *decnet.Catalog) (decnet.DeployRequest, error) {
	var req decnet.DeployRequest
	if err := decnet.DecodeStrict(data, &req); err != nil {
		return decnet.DeployRequest{}, err
	}
	req.Config.Network = network
	if req.Config.Mode == "" {
		req.Config.Mode = decnet.ModeSwarm
	}
	if err := req.Config.Validate(cat); err != nil {
		return decnet.DeployRequest{}, err
	}
	return req, nil
}

// decodeTeardown decodes a POST /teardown body; an empty decky_id means all.
func decodeTeardown(data []byte) (decnet.TeardownRequest, error) {
	var req decnet.TeardownRequest
	if err := decnet.DecodeStrict(data, &req); err != nil {
		return decnet.TeardownRequest{}, err
	}
	if req.DeckyID != "" && !decnet.ValidDeckyName(req.DeckyID) {
		v := &decnet.ValidationError{}
		v.Add("decky_id", "%q must match [a-z0-9][a-z0-9-]{0,62}", req.DeckyID)
		return decnet.TeardownRequest{}, v
	}
	return req, nil
}

// decodeMutate decodes a POST /mutate body: a valid decky name and a
// non-empty, duplicate-free list of services of cat.
func decodeMutate(data []byte, cat *decnet.Catalog) (decnet.MutateRequest, error) {
	var req decnet.MutateRequest
	if err := decnet.DecodeStrict(data, &req); err != nil {
		return decnet.MutateRequest{}, err
	}
	v := &decnet.ValidationError{}
	switch {
	case req.DeckyID == "":
		v.Add("decky_id", "required")
	case !decnet.ValidDeckyName(req.DeckyID):
		v.Add("decky_id", "%q must match [a-z0-9][a-z0-9-]{0,62}", req.DeckyID)
	}
	if err := decnet.ValidateServices("services", req.Services, cat); err != nil {
		var sv *decnet.ValidationError
		if !errors.As(err, &sv) {
			return decnet.MutateRequest{}, err // never drop a rejection
		}
		v.Merge("", sv)
	}
	if err := v.Err(); err != nil {
		return decnet.MutateRequest{}, err
	}
	return req, nil
}

// decodeEmpty accepts an empty body or an empty JSON object.
func decodeEmpty(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	var v struct{}
	return decnet.DecodeStrict(data, &v)
}
