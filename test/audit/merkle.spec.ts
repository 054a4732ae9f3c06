import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { merkleInclusionProof, merkleRoot, verifyMerkleInclusion } from '../../src/audit/merkle.js';

// The RFC 6962 test tree of Certificate Transparency's reference implementations: eight leaves
// and the root of each prefix of them.
const CT_LEAVES = [
  '',
  '00',
  '10',
  '2021',
  '3031',
  '40414243',
  '5051525354555657',
  '606162636465666768696a6b6c6d6e6f',
].map((hex) => Buffer.from(hex, 'hex'));
const CT_ROOTS = [
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];

describe('merkleRoot', () => {
  it('is SHA-256 of nothing for no leaves', () => {
    expect(merkleRoot([]).toString('hex')).toBe(
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
  });

  it.each(CT_ROOTS.map((root, index) => [index + 1, root] as const))(
    "matches Certificate Transparency's root of the first %i test leaves",
    (size, root) => {
      expect(merkleRoot(CT_LEAVES.slice(0, size)).toString('hex')).toBe(root);
    },
  );
});

describe('merkle inclusion proofs', () => {
  it('prove every leaf of every prefix of the test tree', () => {
    for (let size = 1; size <= CT_LEAVES.length; size += 1) {
      const leaves = CT_LEAVES.slice(0, size);
      const root = merkleRoot(leaves);
      for (let index = 0; index < size; index += 1) {
        const proof = merkleInclusionProof(leaves, index);
        expect(verifyMerkleInclusion(leaves[index], index, size, proof, root)).toBe(true);
      }
    }
  });

  it('fail for another leaf, another index or another root', () => {
    fc.assert(
      fc.property(
        // Distinct leaves: a copy of the leaf at another index would be proven there too.
        fc.uniqueArray(fc.uint8Array({ maxLength: 8 }), {
          selector: (leaf) => Buffer.from(leaf).toString('hex'),
          minLength: 2,
          maxLength: 40,
        }),
        fc.nat(),
        (leaves, pick) => {
          const index = pick % leaves.length;
          const root = merkleRoot(leaves);
          const proof = merkleInclusionProof(leaves, index);
          const other = Buffer.concat([leaves[index], Buffer.of(1)]);
          expect(verifyMerkleInclusion(leaves[index], index, leaves.length, proof, root)).toBe(
            true,
          );
          expect(verifyMerkleInclusion(other, index, leaves.length, proof, root)).toBe(false);
          const otherIndex = (index + 1) % leaves.length;
          expect(verifyMerkleInclusion(leaves[index], otherIndex, leaves.length, proof, root)).toBe(
            false,
          );
          expect(
            verifyMerkleInclusion(leaves[index], index, leaves.length, proof, merkleRoot([])),
          ).toBe(false);
        },
      ),
    );
  });

  it('refuses an index outside the tree', () => {
    expect(() => merkleInclusionProof(CT_LEAVES, 8)).toThrow(RangeError);
    expect(verifyMerkleInclusion(CT_LEAVES[0], 8, 8, [], merkleRoot(CT_LEAVES))).toBe(false);
  });
});
